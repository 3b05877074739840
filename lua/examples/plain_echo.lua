--- Echoes every byte back unchanged and prints nothing: the handler the
-- benchmarks measure.

local PlainEcho = {}

function PlainEcho:connection_made(transport)
  self.transport = transport
end

function PlainEcho:data_received(data)
  self.transport:write(data)
end

-- Stop reading while the peer is not reading what we send.
function PlainEcho:pause_writing()
  self.transport:pause_reading()
end

function PlainEcho:resume_writing()
  self.transport:resume_reading()
end

return PlainEcho
