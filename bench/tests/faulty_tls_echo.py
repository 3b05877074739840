"""A TLS echo server that misbehaves on purpose, to check that tls-load notices.

Usage: python3 faulty_tls_echo.py MODE PORT CERT KEY
MODE: flip  - changes one byte of every 1000th chunk
      extra - sends one byte more than it received, every 1000th chunk
      close - closes the connection after 200 chunks
      stall - stops echoing after 200 chunks (the message never completes)
"""
import asyncio
import ssl
import sys


class Faulty(asyncio.Protocol):
    def __init__(self, mode):
        self.mode, self.n = mode, 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.n += 1
        if self.mode == "flip" and self.n % 1000 == 0:
            data = bytes([data[0] ^ 1]) + data[1:]
        elif self.mode == "extra" and self.n % 1000 == 0:
            data = data + b"x"
        elif self.mode == "close" and self.n > 200:
            self.transport.close()
            return
        elif self.mode == "stall" and self.n > 200:
            return
        self.transport.write(data)


async def main(mode, port, cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = await asyncio.get_running_loop().create_server(lambda: Faulty(mode), "127.0.0.1", port, ssl=ctx)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
