"""asyncio.Protocol TLS echo server, on uvloop or on the stock asyncio loop.

Usage: /usr/bin/python3 tls_protocol_echo.py uvloop|asyncio PORT CERT KEY [HOST]
(Debian's python3-uvloop is only importable by Debian's /usr/bin/python3.)

The Protocol is the plain echo of the benchmarks (write back what arrives, stop
reading while the peer does not read); TLS comes from create_server(ssl=...),
which both loops implement on memory BIOs (ssl.MemoryBIO / SSLObject), as
luaecho does.  Python's default server context: TLS 1.2 and 1.3, OpenSSL's
default ciphers.
"""
import asyncio
import ssl
import sys


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()

    def connection_lost(self, exc):
        self.transport = None


async def main(loop_name, host, port, cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, host, port, ssl=ctx, backlog=4096)
    print(f"tls_protocol_echo ({loop_name}, {ssl.OPENSSL_VERSION}) listening on {host}:{port}",
          file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[1] not in ("uvloop", "asyncio"):
        sys.exit("usage: tls_protocol_echo.py uvloop|asyncio PORT CERT KEY [HOST]")
    name, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    host = sys.argv[5] if len(sys.argv) > 5 else "127.0.0.1"
    if name == "uvloop":
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(main(name, host, port, cert, key))
    except KeyboardInterrupt:
        pass
