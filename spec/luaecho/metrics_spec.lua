-- luaecho.metrics under luaecho.testing's fake registry: declaring,
-- inc/set/dec/observe, reading back with testing.metric and
-- testing.scrape, re-declaring, and every error a script can meet, each
-- blaming the line that made the bad call. The same module runs over the
-- host's registry in spec/integration/script_metrics_spec.lua.
local testing = require "luaecho.testing"
local metrics = require "luaecho.metrics"

local FIXTURES = "spec/fixtures/script_metrics/"

-- The message of the error fn() raises, which must blame this file.
local function error_of(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "no error")
  err = tostring(err)
  local here, message = err:match("^(spec/luaecho/metrics_spec%.lua:%d+): (.*)$")
  assert.is_truthy(here, "the error does not blame the caller: " .. err)
  return message
end

describe("luaecho.metrics #unit", function()
  before_each(testing.reset)

  describe("counters", function()
    it("count from 0, by 1 or by n, each label value apart", function()
      local c = metrics.counter("hits_total", "Hits.", { "method" })
      assert.is_nil(testing.metric("hits_total", { "GET" }))
      c:inc(nil, { "GET" })
      c:inc({ "GET" })               -- the label values in n's place: n = 1
      c:inc(2.5, { "POST" })
      c:inc(0, { "POST" })
      assert.are.equal(2, testing.metric("hits_total", { "GET" }))
      assert.are.equal(2.5, testing.metric("hits_total", { "POST" }))
    end)

    it("without labels, are exported as 0 from their declaration", function()
      local c = metrics.counter("starts_total", "Starts.")
      assert.are.equal(0, testing.metric("starts_total"))
      c:inc()
      c:inc(1, {})
      assert.are.equal(2, testing.metric("starts_total"))
    end)

    it("take numbers as label values, as their text", function()
      local c = metrics.counter("codes_total", "Codes.", { "code", "ok" })
      c:inc(1, { 200, "yes" })
      c:inc(1, { "200", "yes" })
      assert.are.equal(2, testing.metric("codes_total", { "200", "yes" }))
      assert.are.equal(2, testing.metric("codes_total", { 200, "yes" }))
    end)
  end)

  describe("gauges", function()
    it("are set, raised and lowered by any finite amount", function()
      local g = metrics.gauge("queue_depth", "Depth.", { "queue" })
      g:set(10, { "a" })
      g:inc(nil, { "a" })
      g:dec(3.5, { "a" })
      g:dec({ "b" })
      g:inc(-2, { "b" })
      g:set(-1e300, { "c" })
      assert.are.equal(7.5, testing.metric("queue_depth", { "a" }))
      assert.are.equal(-3, testing.metric("queue_depth", { "b" }))
      assert.are.equal(-1e300, testing.metric("queue_depth", { "c" }))
    end)
  end)

  describe("histograms", function()
    it("count each observation in the first bucket whose bound is >= it, cumulatively", function()
      local h = metrics.histogram("size_bytes", "Sizes.", { 10, 100, 1000 })
      for _, v in ipairs({ 1, 10, 10.5, 100, 5000, -3 }) do h:observe(v) end
      assert.are.same({ count = 6, sum = 5118.5, buckets = { 3, 5, 5, 6 } }, testing.metric("size_bytes"))
    end)

    it("keep a series per label value", function()
      local h = metrics.histogram("latency_seconds", "Latency.", { 0.1, 1 }, { "route" })
      h:observe(0.05, { "/a" })
      h:observe(2, { "/b" })
      assert.are.same({ count = 1, sum = 0.05, buckets = { 1, 1, 1 } }, testing.metric("latency_seconds", { "/a" }))
      assert.are.same({ count = 1, sum = 2, buckets = { 0, 0, 1 } }, testing.metric("latency_seconds", { "/b" }))
    end)
  end)

  describe("the scrape", function()
    it("writes numbers as the shortest text that reads back", function()
      local g = metrics.gauge("n", "N.", { "i" })
      g:set(0.1 + 0.2, { "1" })
      g:set(1 / 3, { "2" })
      g:set(-2 ^ 53, { "3" })
      g:set(1e-300, { "4" })
      assert.matches('n{worker="1",i="1"} 0.30000000000000004\n'
        .. 'n{worker="1",i="2"} 0.3333333333333333\n'
        .. 'n{worker="1",i="3"} -9007199254740992\n'
        .. 'n{worker="1",i="4"} 1e-300\n', testing.scrape(), 1, true)
    end)

    it("lists families by name and series by label values, each with worker=\"1\" first", function()
      local c = metrics.counter("b_requests_total", "Requests\nby \\ method.", { "method" })
      local h = metrics.histogram("a_size_bytes", "Sizes.", { 0.5, 10 })
      metrics.gauge("c_up", "Up.")
      c:inc(3, { "POST" })
      c:inc(1, { 'we"ird\n\\' })
      c:inc(2, { "GET" })
      h:observe(0.1)
      h:observe(0.2)
      h:observe(1e20)
      assert.are.equal(table.concat({
        "# HELP a_size_bytes Sizes.",
        "# TYPE a_size_bytes histogram",
        'a_size_bytes_bucket{worker="1",le="0.5"} 2',
        'a_size_bytes_bucket{worker="1",le="10"} 2',
        'a_size_bytes_bucket{worker="1",le="+Inf"} 3',
        'a_size_bytes_sum{worker="1"} 1e+20',
        'a_size_bytes_count{worker="1"} 3',
        "# HELP b_requests_total Requests\\nby \\\\ method.",
        "# TYPE b_requests_total counter",
        'b_requests_total{worker="1",method="GET"} 2',
        'b_requests_total{worker="1",method="POST"} 3',
        'b_requests_total{worker="1",method="we\\"ird\\n\\\\"} 1',
        "# HELP c_up Up.",
        "# TYPE c_up gauge",
        'c_up{worker="1"} 0',
        "",
      }, "\n"), testing.scrape())
    end)

    it("is empty when no script declared a metric, and after testing.reset()", function()
      assert.are.equal("", testing.scrape())
      metrics.counter("x_total", "X.")
      testing.reset()
      assert.are.equal("", testing.scrape())
    end)
  end)

  describe("declaring again", function()
    it("with the same name, kind, labels and buckets gives the same series; the first help stays", function()
      local a = metrics.histogram("d_seconds", "First.", { 1, 2 }, { "x" })
      local b = metrics.histogram("d_seconds", "Second.", { 1, 2 }, { "x" })
      a:observe(1, { "v" })
      b:observe(1.5, { "v" })
      assert.are.equal(2, testing.metric("d_seconds", { "v" }).count)
      assert.matches("# HELP d_seconds First.\n", testing.scrape(), 1, true)
    end)

    it("as another kind, with other labels or other buckets is an error naming what it is", function()
      metrics.counter("e_total", "E.", { "a", "b" })
      metrics.histogram("f_seconds", "F.", { 0.1, 1 })
      assert.are.equal("luaecho.metrics.gauge(): metric 'e_total' is already a counter with labels {a,b}",
        error_of(function() metrics.gauge("e_total", "E.", { "a", "b" }) end))
      assert.are.equal("luaecho.metrics.counter(): metric 'e_total' is already a counter with labels {a,b}",
        error_of(function() metrics.counter("e_total", "E.", { "b", "a" }) end))
      assert.are.equal("luaecho.metrics.counter(): metric 'e_total' is already a counter with labels {a,b}",
        error_of(function() metrics.counter("e_total", "E.") end))
      assert.are.equal(
        "luaecho.metrics.histogram(): metric 'f_seconds' is already a histogram with no labels and buckets {0.1,1}",
        error_of(function() metrics.histogram("f_seconds", "F.", { 0.1, 2 }) end))
    end)

    it("keeps nothing across testing.reset(): a name is free again", function()
      metrics.counter("g_total", "G.")
      testing.reset()
      metrics.gauge("g_total", "G, now a gauge.")
      assert.are.equal(0, testing.metric("g_total"))
    end)

    it("is not needed for a metric kept from before testing.reset(): it counts from 0 again", function()
      local kept = metrics.counter("kept_total", "Kept.", { "k" })
      kept:inc(5, { "v" })
      testing.reset()
      kept:inc(1, { "v" })
      assert.are.equal(1, testing.metric("kept_total", { "v" }))
    end)
  end)

  describe("a declaration's errors", function()
    local cases = {
      { "counter", { 42, "h" }, "luaecho.metrics.counter(): the name must be a string, not a number" },
      { "counter", { "a-b_total", "h" },
        "luaecho.metrics.counter(): bad metric name 'a-b_total' "
          .. "(letters, digits, '_' and ':', not starting with a digit)" },
      { "gauge", { "1a", "h" },
        "luaecho.metrics.gauge(): bad metric name '1a' (letters, digits, '_' and ':', not starting with a digit)" },
      { "gauge", { "", "h" },
        "luaecho.metrics.gauge(): bad metric name '' (letters, digits, '_' and ':', not starting with a digit)" },
      { "gauge", { "luaecho_mine", "h" },
        "luaecho.metrics.gauge(): the name 'luaecho_mine' is reserved: "
          .. "luaecho_ and process_ are luaecho's own series" },
      { "counter", { "process_x_total", "h" },
        "luaecho.metrics.counter(): the name 'process_x_total' is reserved: "
          .. "luaecho_ and process_ are luaecho's own series" },
      { "counter", { "requests", "h" },
        "luaecho.metrics.counter(): a counter's name ends in _total: 'requests' does not (say 'requests_total')" },
      { "gauge", { "g", nil }, "luaecho.metrics.gauge(): the help must be a string, not a nil" },
      { "gauge", { "g", "h", "method" },
        "luaecho.metrics.gauge(): the label names must be an array of strings, not a string" },
      { "gauge", { "g", "h", { "ok", 7 } }, "luaecho.metrics.gauge(): label name 2 must be a string, not a number" },
      { "gauge", { "g", "h", { "a:b" } },
        "luaecho.metrics.gauge(): bad label name 'a:b' (letters, digits and '_', not starting with a digit)" },
      { "gauge", { "g", "h", { "__name" } },
        "luaecho.metrics.gauge(): the label name '__name' is reserved: names starting __ are Prometheus'" },
      { "counter", { "c_total", "h", { "worker" } },
        "luaecho.metrics.counter(): the label name 'worker' is reserved: luaecho adds it to every series" },
      { "histogram", { "h", "h", { 1 }, { "le" } },
        "luaecho.metrics.histogram(): the label name 'le' is reserved in a histogram: its buckets use it" },
      { "gauge", { "g", "h", { "a", "b", "a" } }, "luaecho.metrics.gauge(): the label name 'a' is given twice" },
      { "gauge", { "g", "h", { "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q" } },
        "luaecho.metrics.gauge(): at most 16 label names" },
      { "histogram", { "h", "h" },
        "luaecho.metrics.histogram(): the buckets must be a non-empty array of increasing finite numbers, not a nil" },
      { "histogram", { "h", "h", {} },
        "luaecho.metrics.histogram(): the buckets must be a non-empty array of increasing finite numbers, "
          .. "not an empty table" },
      { "histogram", { "h", "h", { 1, 1 } }, "luaecho.metrics.histogram(): bucket 2 (1) must be above bucket 1 (1)" },
      { "histogram", { "h", "h", { 1, 0.5 } },
        "luaecho.metrics.histogram(): bucket 2 (0.5) must be above bucket 1 (1)" },
      { "histogram", { "h", "h", { 1, math.huge } },
        "luaecho.metrics.histogram(): bucket 2 must be a finite number, not inf (+Inf is implied)" },
      { "histogram", { "h", "h", { 0 / 0 } },
        "luaecho.metrics.histogram(): bucket 1 must be a finite number, not NaN (+Inf is implied)" },
      { "histogram", { "h", "h", { "1" } },
        "luaecho.metrics.histogram(): bucket 1 must be a finite number, not a string (+Inf is implied)" },
    }
    for _, case in ipairs(cases) do
      it(case[3], function()
        local kind, arguments = case[1], case[2]
        assert.are.equal(case[3], error_of(function() metrics[kind](table.unpack(arguments, 1, 4)) end))
      end)
    end

    it("names a histogram's bucket limit", function()
      local many = {}
      for i = 1, 65 do many[i] = i end
      assert.are.equal("luaecho.metrics.histogram(): at most 64 buckets",
        error_of(function() metrics.histogram("h", "h", many) end))
    end)

    it("accepts ':' in names and the edge cases of the rules", function()
      metrics.gauge("ns:sub_g1", "h", { "_x", "le" })
      metrics.counter(":_total", "")
      metrics.histogram("h", "h", { -1, 0, 1e-9 }, { "worker_id" })
    end)
  end)

  describe("a method's errors", function()
    local c, g, h, plain
    before_each(function()
      c = metrics.counter("m_total", "M.", { "method" })
      g = metrics.gauge("m_gauge", "M.", { "a", "b" })
      h = metrics.histogram("m_seconds", "M.", { 1 })
      plain = metrics.counter("p_total", "P.")
    end)

    it("refuse what is not a finite number, and a counter going down", function()
      assert.are.equal("counter 'm_total': inc() takes a finite number >= 0, not -1",
        error_of(function() c:inc(-1, { "GET" }) end))
      assert.are.equal("counter 'm_total': inc() takes a finite number >= 0, not NaN",
        error_of(function() c:inc(0 / 0, { "GET" }) end))
      assert.are.equal("counter 'p_total': inc() takes a finite number >= 0, not inf",
        error_of(function() plain:inc(math.huge) end))
      assert.are.equal("counter 'p_total': inc() takes a finite number >= 0, not a string",
        error_of(function() plain:inc("1") end))
      assert.are.equal("gauge 'm_gauge': set() takes a finite number, not -inf",
        error_of(function() g:set(-math.huge, { "x", "y" }) end))
      assert.are.equal("gauge 'm_gauge': set() takes a finite number, not a nil",
        error_of(function() g:set(nil, { "x", "y" }) end))
      assert.are.equal("gauge 'm_gauge': dec() takes a finite number, not a boolean",
        error_of(function() g:dec(true, { "x", "y" }) end))
      assert.are.equal("histogram 'm_seconds': observe() takes a finite number, not NaN",
        error_of(function() h:observe(0 / 0) end))
      assert.are.equal(0, testing.metric("p_total"))
    end)

    it("refuse label values that do not fit the label names", function()
      assert.are.equal("counter 'm_total' has labels {method}: inc() takes its label values as an array, not a nil",
        error_of(function() c:inc(1) end))
      assert.are.equal("counter 'm_total' has labels {method}: inc() takes its label values as an array, not a string",
        error_of(function() c:inc(1, "GET") end))
      assert.are.equal("gauge 'm_gauge' has labels {a,b}: set() was given 1 label value",
        error_of(function() g:set(1, { "x" }) end))
      assert.are.equal("gauge 'm_gauge' has labels {a,b}: inc() was given 3 label values",
        error_of(function() g:inc(1, { "x", "y", "z" }) end))
      assert.are.equal("counter 'p_total' has no labels: inc() was given 1 label value",
        error_of(function() plain:inc(1, { "GET" }) end))
      assert.are.equal(
        "histogram 'm_seconds' has no labels: observe() takes its label values as an array, not a number",
        error_of(function() h:observe(1, 2) end))
    end)

    it("refuse label values that are not text", function()
      assert.are.equal("counter 'm_total': label 'method' must be a string or a number, not a table",
        error_of(function() c:inc(1, { {} }) end))
      assert.are.equal("gauge 'm_gauge': label 'b' must be a string or a number, not a boolean",
        error_of(function() g:set(1, { "x", false }) end))
      assert.are.equal("counter 'm_total': label 'method' must be UTF-8 text without NUL bytes",
        error_of(function() c:inc(1, { "a\0b" }) end))
      assert.are.equal("counter 'm_total': label 'method' must be UTF-8 text without NUL bytes",
        error_of(function() c:inc(1, { "\xff" }) end))
      assert.is_nil(testing.metric("m_total", { "a\0b" }))
    end)
  end)

  describe("the limits", function()
    it("are 1000 metrics and 10000 series in a process, as in luaecho", function()
      for i = 1, 1000 do metrics.gauge("g" .. i, "G.") end  -- 1000 metrics, 1000 series
      assert.are.equal("luaecho.metrics.gauge(): too many metrics: at most 1000 in a process",
        error_of(function() metrics.gauge("g1001", "G.") end))
      metrics.gauge("g1", "G.")                              -- declaring one again is fine
      testing.reset()
      local c = metrics.counter("many_total", "Many.", { "i" })
      for i = 1, 10000 do c:inc(1, { i }) end
      assert.are.equal("counter 'many_total': too many series: at most 10000 in a process",
        error_of(function() c:inc(1, { "one more" }) end))
      c:inc(1, { 10000 })                                    -- an existing series still counts
      assert.are.equal(2, testing.metric("many_total", { 10000 }))
    end)
  end)

  describe("in a handler script", function()
    it("counts what the handler does, and its errors reach the connection", function()
      local conn = testing.connect(FIXTURES .. "counting.lua")
      conn:send("GET /a\nPUT /b\nGET /c\n")
      assert.are.equal("ok\nok\nok\n", conn:output())
      assert.are.equal(2, testing.metric("fixture_requests_total", { "GET" }))
      assert.are.equal(1, testing.metric("fixture_requests_total", { "PUT" }))
      assert.are.same({ count = 3, sum = 18, buckets = { 0, 3, 3 } }, testing.metric("fixture_line_bytes"))
      assert.are.equal(1, testing.metric("fixture_connections"))
      conn:eof()
      assert.are.equal(0, testing.metric("fixture_connections"))
    end)

    it("reports a bad call as the handler's error, at its line", function()
      testing.expect_errors()
      local conn = testing.connect(FIXTURES .. "counting.lua")
      conn:send("BAD\n")
      assert.is_true(conn:aborted())
      assert.matches("counting%.lua:%d+: counter 'fixture_requests_total' has labels {method}: "
        .. "inc%(%) was given 2 label values", conn:errors()[1])
    end)

    it("names an unknown metric when a spec asks for it", function()
      metrics.counter("known_total", "K.")
      local ok, err = pcall(testing.metric, "unknown_total")
      assert.is_false(ok)
      assert.matches("luaecho.testing.metric(): no metric 'unknown_total' (declared: known_total)", err, 1, true)
    end)
  end)
end)
