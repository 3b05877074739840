--- luaecho.metrics: counters, gauges and histograms a script exports on
-- the host's metrics endpoint (`luaecho --metrics`), beside luaecho's own
-- series, with the API of nginx-lua-prometheus.
-- The values live in the host (src/script_metrics.c), for the whole
-- process: each worker writes its own series, which the scrape shows with
-- a `worker` label, and a reload keeps them (the same name, kind and
-- labels give the same series, so a counter goes on counting). This file
-- checks every argument and words every error, blaming the caller; the
-- host's primitives (core.metric_family, metric_series, metric_add,
-- metric_set, metric_observe) only store. luaecho.testing's fake core has
-- the same primitives, so a handler's metrics work, and can be asserted
-- on, under plain busted.
-- Relies on luaecho.core, looked up at the first declaration.
-- @usage
--   local metrics = require "luaecho.metrics"
--   local requests = metrics.counter("myapp_requests_total", "Requests served.", { "method" })
--   local sizes = metrics.histogram("myapp_request_bytes", "Request sizes.", { 100, 1000, 10000 })
--   requests:inc(1, { "GET" })
--   sizes:observe(#line)
local package, require = package, require
local format, find = string.format, string.find
local concat = table.concat
local huge = math.huge
local utf8_len = utf8.len
local error, ipairs, setmetatable, tonumber, tostring, type = error, ipairs, setmetatable, tonumber, tostring, type

local M = {}

local LABELS_MAX, BUCKETS_MAX = 16, 64 -- as in src/script_metrics.c

-- Every check below returns nil when all is well, else the message; the
-- public function raises it, blaming its caller (level 2).

-- luaecho.core: the host's, or luaecho.testing's fake; nil and why without either.
local function host_core()
  local core = package.loaded["luaecho.core"]
  if core == nil and package.preload["luaecho.core"] then core = require("luaecho.core") end
  if core == nil or core.metric_family == nil then
    return nil, "metrics need the luaecho host (or luaecho.testing, in a spec)"
  end
  return core
end

-- "a number", "a nil": what a value of the wrong type is.
local function a_type(v)
  return "a " .. type(v)
end

-- How a bad value reads in a message: a number as itself, else its type.
local function shown(v)
  if type(v) ~= "number" then return "a " .. type(v) end
  if v ~= v then return "NaN" end
  return tostring(v)
end

-- A bound as the scrape writes it: the shortest %g that reads back.
local function number_text(v)
  local text
  for digits = 15, 17 do
    text = format("%." .. digits .. "g", v)
    if tonumber(text) == v then break end
  end
  return text
end

-- "{a,b}", as a message shows label names or bounds.
local function braces(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = type(v) == "number" and number_text(v) or v end
  return "{" .. concat(out, ",") .. "}"
end

-- What a family was declared as, as messages say it.
local function described(kind, labels, buckets)
  local text = #labels == 0 and "no labels" or "labels " .. braces(labels)
  if kind == "histogram" then text = text .. " and buckets " .. braces(buckets) end
  return format("a %s with %s", kind, text)
end

local function name_problem(kind, name)
  if type(name) ~= "string" then return "the name must be a string, not " .. a_type(name) end
  if not find(name, "^[%a_:][%w_:]*$") then
    return format("bad metric name '%s' (letters, digits, '_' and ':', not starting with a digit)", name)
  end
  if find(name, "^luaecho_") or find(name, "^process_") then
    return format("the name '%s' is reserved: luaecho_ and process_ are luaecho's own series", name)
  end
  if kind == "counter" and not find(name, "_total$") then
    return format("a counter's name ends in _total: '%s' does not (say '%s_total')", name, name)
  end
end

local function label_name_problem(kind, label, i, seen)
  if type(label) ~= "string" then return format("label name %d must be a string, not %s", i, a_type(label)) end
  if not find(label, "^[%a_][%w_]*$") then
    return format("bad label name '%s' (letters, digits and '_', not starting with a digit)", label)
  end
  if find(label, "^__") then
    return format("the label name '%s' is reserved: names starting __ are Prometheus'", label)
  end
  if label == "worker" then return "the label name 'worker' is reserved: luaecho adds it to every series" end
  if label == "le" and kind == "histogram" then
    return "the label name 'le' is reserved in a histogram: its buckets use it"
  end
  if seen[label] then return format("the label name '%s' is given twice", label) end
  seen[label] = true
end

local function labels_problem(kind, labelnames)
  if labelnames == nil then return nil end
  if type(labelnames) ~= "table" then
    return "the label names must be an array of strings, not " .. a_type(labelnames)
  end
  if #labelnames > LABELS_MAX then return format("at most %d label names", LABELS_MAX) end
  local seen = {}
  for i = 1, #labelnames do
    local why = label_name_problem(kind, labelnames[i], i, seen)
    if why then return why end
  end
end

local function buckets_problem(buckets)
  if type(buckets) ~= "table" or #buckets == 0 then
    return "the buckets must be a non-empty array of increasing finite numbers, not "
      .. (type(buckets) == "table" and "an empty table" or a_type(buckets))
  end
  if #buckets > BUCKETS_MAX then return format("at most %d buckets", BUCKETS_MAX) end
  for i = 1, #buckets do
    local b = buckets[i]
    if type(b) ~= "number" or b ~= b or b == huge or b == -huge then
      return format("bucket %d must be a finite number, not %s (+Inf is implied)", i, shown(b))
    end
    if i > 1 and b <= buckets[i - 1] then
      return format("bucket %d (%s) must be above bucket %d (%s)", i, shown(b), i - 1, shown(buckets[i - 1]))
    end
  end
end

-- A copy of array 'list' (nil: empty).
local function copy(list)
  local out = {}
  for i = 1, list and #list or 0 do out[i] = list[i] end
  return out
end

-- Series handles of this Lua state, per family handle: label values
-- (joined with "\0" when more than one) -> series handle.
local caches = {}

local Metric = {}

-- "counter 'x_total'".
local function who(self)
  return format("%s '%s'", self.kind, self.name)
end

-- A new series for checked label values 'lv' (an array of strings), or
-- nil and why.
local function new_series(self, lv)
  local handle, _, limit = self.core.metric_series(self.family, lv)
  if handle == nil then return nil, format("%s: too many series: at most %d in a process", who(self), limit) end
  return handle
end

-- Declare a family with the host and make its object, or nil and why.
local function declare(kind, name, help, buckets, labelnames)
  local why = name_problem(kind, name)
    or type(help) ~= "string" and "the help must be a string, not " .. a_type(help)
    or labels_problem(kind, labelnames)
    or kind == "histogram" and buckets_problem(buckets)
  local core, no_core = host_core()
  why = why or no_core
  if why then return nil, format("luaecho.metrics.%s(): %s", kind, why) end
  local labels = copy(labelnames)
  buckets = kind == "histogram" and copy(buckets) or nil
  local family, result, their_kind, their_labels, their_buckets = core.metric_family(kind, name, help, labels, buckets)
  if family == nil and result == "full" then
    return nil, format("luaecho.metrics.%s(): too many metrics: at most %d in a process", kind, their_kind)
  elseif family == nil then
    return nil, format("luaecho.metrics.%s(): metric '%s' is already %s", kind, name,
      described(their_kind, their_labels, their_buckets))
  end
  caches[family] = caches[family] or {}
  local self = setmetatable({ name = name, kind = kind, labels = labels, n = #labels, family = family, core = core,
    cache = caches[family] }, Metric[kind])
  if self.n == 0 then -- one series, exported (as 0) from the start
    self.one, why = new_series(self, {})
    if self.one == nil then return nil, why end
  end
  return self
end

--- A counter: inc([n=1] [, label_values]). Its name ends in _total.
function M.counter(name, help, labelnames)
  local self, why = declare("counter", name, help, nil, labelnames)
  if self == nil then error(why, 2) end
  return self
end

--- A gauge: set(v [, label_values]), inc([n=1] [, label_values]), dec(...).
function M.gauge(name, help, labelnames)
  local self, why = declare("gauge", name, help, nil, labelnames)
  if self == nil then error(why, 2) end
  return self
end

--- A histogram over 'buckets' (increasing upper bounds; +Inf is implied):
-- observe(v [, label_values]).
function M.histogram(name, help, buckets, labelnames)
  local self, why = declare("histogram", name, help, buckets, labelnames)
  if self == nil then error(why, 2) end
  return self
end

-- The label values as the host takes them (strings: UTF-8, no NUL), or
-- nil and why.
local function label_values(self, lv)
  local out = {}
  for i = 1, self.n do
    local v = lv[i]
    if type(v) == "number" then v = tostring(v) end
    if type(v) ~= "string" then
      return nil, format("%s: label '%s' must be a string or a number, not %s", who(self), self.labels[i], a_type(v))
    end
    if find(v, "\0", 1, true) or not utf8_len(v) then
      return nil, format("%s: label '%s' must be UTF-8 text without NUL bytes", who(self), self.labels[i])
    end
    out[i] = v
  end
  return out
end

-- Why label values 'lv' do not fit the label names.
local function mismatch(self, lv, method)
  local has = self.n == 0 and "has no labels" or "has labels " .. braces(self.labels)
  local given = type(lv) ~= "table" and "takes its label values as an array, not " .. a_type(lv)
    or format("was given %d label value%s", #lv, #lv == 1 and "" or "s")
  return format("%s %s: %s() %s", who(self), has, method, given)
end

-- The series handle for label values 'lv' (nil: none), cached; or nil and why.
local function series(self, lv, method)
  local n = self.n
  if n == 0 then
    if lv ~= nil and (type(lv) ~= "table" or #lv ~= 0) then return nil, mismatch(self, lv, method) end
    return self.one
  end
  if type(lv) ~= "table" or #lv ~= n then return nil, mismatch(self, lv, method) end
  for i = 1, n do
    local t = type(lv[i])
    if t ~= "string" and t ~= "number" then return label_values(self, lv) end
  end
  local key = n == 1 and lv[1] .. "" or concat(lv, "\0", 1, n) -- a number as its text, as the host has it
  local handle = self.cache[key]
  if handle ~= nil then return handle end
  local values, why = label_values(self, lv)
  if values == nil then return nil, why end
  handle, why = new_series(self, values)
  self.cache[key] = handle
  return handle, why
end

-- Why 'v' is not a finite number (>= 0 for 'nonnegative'); nil if it is.
local function amount_problem(self, v, method, nonnegative)
  if type(v) ~= "number" or v ~= v or v == huge or v == -huge or (nonnegative and v < 0) then
    return format("%s: %s() takes a finite number%s, not %s", who(self), method, nonnegative and " >= 0" or "",
      shown(v))
  end
end

-- inc's and dec's optional n: a table in its place is the label values.
local function optional_n(n, lv)
  if n == nil then return 1, lv end
  if type(n) == "table" and lv == nil then return 1, n end
  return n, lv
end

-- The series for a method's call, its amount checked; raises for the
-- method's caller.
local function target(self, v, lv, method, nonnegative)
  local why = amount_problem(self, v, method, nonnegative)
  local handle
  if why == nil then handle, why = series(self, lv, method) end
  if handle == nil then error(why, 3) end
  return handle
end

local Counter = setmetatable({}, { __index = Metric })
Metric.counter = { __index = Counter, __name = "luaecho.metrics.counter" }

--- counter:inc([n=1] [, label_values]): add n >= 0.
function Counter:inc(n, lv)
  n, lv = optional_n(n, lv)
  self.core.metric_add(target(self, n, lv, "inc", true), n)
end

local Gauge = setmetatable({}, { __index = Metric })
Metric.gauge = { __index = Gauge, __name = "luaecho.metrics.gauge" }

--- gauge:set(v [, label_values]).
function Gauge:set(v, lv)
  self.core.metric_set(target(self, v, lv, "set", false), v)
end

--- gauge:inc([n=1] [, label_values]).
function Gauge:inc(n, lv)
  n, lv = optional_n(n, lv)
  self.core.metric_add(target(self, n, lv, "inc", false), n)
end

--- gauge:dec([n=1] [, label_values]).
function Gauge:dec(n, lv)
  n, lv = optional_n(n, lv)
  self.core.metric_add(target(self, n, lv, "dec", false), -n)
end

local Histogram = setmetatable({}, { __index = Metric })
Metric.histogram = { __index = Histogram, __name = "luaecho.metrics.histogram" }

--- histogram:observe(v [, label_values]).
function Histogram:observe(v, lv)
  self.core.metric_observe(target(self, v, lv, "observe", false), v)
end

return M
