-- luacheck: std +busted
local errors = require("luaecho.errors")

describe("luaecho.errors #unit", function()
  it("makes a table with the kind, the message and the extra fields", function()
    local err = errors.new("IncompleteReadError", "2 of 4 bytes", { partial = "ab", expected = 4 })
    assert.are.same({ "IncompleteReadError", "2 of 4 bytes", "ab", 4 },
      { err.kind, err.message, err.partial, err.expected })
  end)

  it("reads as 'kind: message' through tostring", function()
    assert.are.equal("ConnectionLost: connection lost", tostring(errors.new("ConnectionLost", "connection lost")))
  end)

  it("keeps kind and message when the fields name them too", function()
    local err = errors.new("LimitOverrunError", "too long", { kind = "other", message = "other", consumed = 9 })
    assert.are.same({ "LimitOverrunError", "too long", 9 }, { err.kind, err.message, err.consumed })
  end)

  it("copies the fields, so changing the table given does not change the error", function()
    local fields = { consumed = 1 }
    local err = errors.new("LimitOverrunError", "too long", fields)
    fields.consumed = 2
    assert.are.equal(1, err.consumed)
  end)

  it("survives pcall as the same table", function()
    local err = errors.new("TransportClosed", "the writer is closed")
    local ok, caught = pcall(error, err)
    assert.is_false(ok)
    assert.are.equal(err, caught)
  end)

  it("tells a luaecho error of a given kind from other kinds and other values", function()
    local err = errors.new("ConnectionLost", "connection lost")
    assert.are.same({ true, true, false, false, false, false }, {
      errors.is(err, "ConnectionLost"), errors.is(err), errors.is(err, "TransportClosed"),
      errors.is({ kind = "ConnectionLost" }, "ConnectionLost"), errors.is("ConnectionLost"), errors.is(nil),
    })
  end)
end)
