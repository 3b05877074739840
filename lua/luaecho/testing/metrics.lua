--- luaecho.testing's fake metrics registry: what src/script_metrics.c
-- keeps for luaecho.metrics, in Lua, so a handler's counters, gauges and
-- histograms work under plain busted and a spec can read them back
-- (testing.metric) or scrape them (testing.scrape), in the host's
-- exposition format with one worker, worker="1".
-- The registry is the world's (W.metrics), emptied by testing.reset().
-- Handles are never reused: a metric object kept from before a reset (in
-- a module that stays in package.loaded, say) is declared again in the
-- new registry when next used, and counts from zero there.
-- Relies on luaecho.testing.world and .args.
-- @usage
--   local metrics = require "luaecho.testing.metrics"
--   core.metric_family = metrics.family            -- and the other primitives
--   metrics.value("requests_total", { "GET" })      --> 3
local world = require "luaecho.testing.world"
local args = require "luaecho.testing.args"
local format = string.format
local concat, sort = table.concat, table.sort
local huge = math.huge
local error, ipairs, pairs, tonumber, tostring, type = error, ipairs, pairs, tonumber, tostring, type

local W = world.W

local M = {}

local FAMILIES_MAX, SERIES_MAX = 1000, 10000 -- as in src/script_metrics.c

-- Handle -> what it was made for: { decl = ..., record = F } for a family,
-- { family = entry, values = ..., record = S } for a series; 'registry' is
-- the W.metrics its record is in. For the whole busted run.
local entries = {}
local last_handle = 0

local function new_handle(entry)
  last_handle = last_handle + 1
  entries[last_handle] = entry
  return last_handle
end

local function copy(list)
  local out = {}
  for i = 1, list and #list or 0 do out[i] = list[i] end
  return out
end

local function same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

-- The family 'd' declares in the world's registry: its record, or nil,
-- "full", FAMILIES_MAX, or nil, "clash", kind, labels, buckets.
local function declare(d)
  local R = W.metrics
  local F = R.families[d.name]
  if F == nil then
    if R.nfamilies == FAMILIES_MAX then return nil, "full", FAMILIES_MAX end
    F = { kind = d.kind, name = d.name, help = d.help, labels = copy(d.labels),
      buckets = d.kind == "histogram" and copy(d.buckets) or nil, by_key = {} }
    R.families[d.name], R.nfamilies = F, R.nfamilies + 1
    F.handle = new_handle({ decl = d, record = F, registry = R })
    return F
  end
  if F.kind == d.kind and same_list(F.labels, d.labels) and same_list(F.buckets or {}, d.buckets or {}) then
    return F
  end
  return nil, "clash", F.kind, copy(F.labels), F.buckets and copy(F.buckets)
end

-- The series of family record F for label values 'values': its record,
-- or nil, "full", SERIES_MAX.
local function series_of(F, fentry, values)
  local key = concat(values, "\0")
  local S = F.by_key[key]
  if S then return S end
  local R = W.metrics
  if R.nseries == SERIES_MAX then return nil, "full", SERIES_MAX end
  S = { values = copy(values), value = 0, counts = {} }
  for i = 1, F.buckets and #F.buckets + 1 or 0 do S.counts[i] = 0 end
  F.by_key[key], R.nseries = S, R.nseries + 1
  S.handle = new_handle({ family = fentry, values = S.values, record = S, registry = R })
  return S
end

-- The record of 'entry' in the world's registry now, made again there if
-- it was made before a testing.reset(); raises for the method's caller.
local function current(entry)
  if entry.registry == W.metrics then return entry.record end
  local record, why
  if entry.decl then
    record, why = declare(entry.decl)
  else
    local F = current(entry.family)
    record, why = series_of(F, entry.family, entry.values)
  end
  if record == nil then
    local d = entry.decl or entry.family.decl
    error(format("luaecho.testing: metric '%s', declared before testing.reset(), cannot be made again: %s",
      d.name, why == "full" and "too many" or "its name is another metric's now"), 0)
  end
  entry.record, entry.registry = record, W.metrics
  return record
end

-- The entry of handle 'h', checked as the host checks it.
local function entry_of(h, fname, what)
  local e = entries[h]
  if e == nil or (what == "series") ~= (e.decl == nil) then args.bad(1, fname, "no such " .. what, 3) end
  return e
end

--- core.metric_family(kind, name, help, labelnames [, buckets]).
function M.family(kind, name, help, labels, buckets)
  local F, why, a, b, c = declare({ kind = kind, name = name, help = help, labels = copy(labels),
    buckets = buckets and copy(buckets) })
  if F == nil then return nil, why, a, b, c end
  return F.handle
end

--- core.metric_series(family, label_values).
function M.series(h, values)
  local fentry = entry_of(h, "metric_series", "metric")
  local F = current(fentry)
  if #values ~= #F.labels then args.bad(2, "metric_series", "one value per label expected", 2) end
  local S, why, limit = series_of(F, fentry, values)
  if S == nil then return nil, why, limit end
  return S.handle
end

-- The series record of handle 'h', of a family of one of 'kinds'.
local function series_record(h, fname, kinds)
  local e = entry_of(h, fname, "series")
  local S = current(e)
  if not kinds[current(e.family).kind] then args.bad(1, fname, "wrong kind of metric", 3) end
  return S, current(e.family)
end

local function finite(v, fname)
  if type(v) ~= "number" or v ~= v or v == huge or v == -huge then
    args.bad(2, fname, "a finite number expected", 3)
  end
  return v
end

--- core.metric_add(series, n).
function M.add(h, n)
  local S, F = series_record(h, "metric_add", { counter = true, gauge = true })
  n = finite(n, "metric_add")
  if n < 0 and F.kind == "counter" then args.bad(2, "metric_add", "a counter only goes up", 2) end
  S.value = S.value + n
end

--- core.metric_set(series, v).
function M.set(h, v)
  local S = series_record(h, "metric_set", { gauge = true })
  S.value = finite(v, "metric_set")
end

--- core.metric_observe(series, v).
function M.observe(h, v)
  local S, F = series_record(h, "metric_observe", { histogram = true })
  v = finite(v, "metric_observe")
  local i = 1
  while F.buckets[i] and F.buckets[i] < v do i = i + 1 end
  S.counts[i] = S.counts[i] + 1
  S.value = S.value + v
end

-- Label values as a spec gives them: numbers as their text.
local function texts(fname, F, lv, level)
  lv = lv or {}
  if type(lv) ~= "table" or #lv ~= #F.labels then
    error(format("luaecho.testing.%s(): metric '%s' has %d label%s, one value each expected", fname, F.name,
      #F.labels, #F.labels == 1 and "" or "s"), level + 1)
  end
  local out = {}
  for i = 1, #lv do out[i] = tostring(lv[i]) end
  return out
end

--- What series 'name' {label_values} holds: a number for a counter or a
-- gauge; for a histogram { count =, sum =, buckets = {...} }, buckets[i]
-- counting the observations <= the i-th bound and the last one all of
-- them (+Inf), as the scrape's cumulative le buckets do. nil when the
-- script never used those label values; raises for a name never declared.
function M.value(name, lv, level)
  local F = W.metrics.families[name]
  if F == nil then
    local names = {}
    for n in pairs(W.metrics.families) do names[#names + 1] = n end
    sort(names)
    error(format("luaecho.testing.metric(): no metric '%s' (declared: %s)", tostring(name),
      #names == 0 and "none" or concat(names, ", ")), level + 1)
  end
  local S = F.by_key[concat(texts("metric", F, lv, level + 1), "\0")]
  if S == nil or F.kind ~= "histogram" then return S and S.value end
  local buckets, total = {}, 0
  for i, c in ipairs(S.counts) do
    total = total + c
    buckets[i] = total
  end
  return { count = total, sum = S.value, buckets = buckets }
end

-- The exposition format, as src/exposition.c writes it.

local function number_text(v)
  if v ~= v then return "NaN" end
  if v == huge or v == -huge then return v > 0 and "+Inf" or "-Inf" end
  local text
  for digits = 15, 17 do
    text = format("%." .. digits .. "g", v)
    if tonumber(text) == v then break end
  end
  return text
end

local LABEL_ESCAPES = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }
local HELP_ESCAPES = { ["\\"] = "\\\\", ["\n"] = "\\n" }

-- One sample line: name..suffix{worker="1",labels...,extra} value.
local function sample(out, F, S, suffix, extra, value)
  local labels = { 'worker="1"' }
  for i, label in ipairs(F.labels) do
    labels[#labels + 1] = format('%s="%s"', label, (S.values[i]:gsub('[\\"\n]', LABEL_ESCAPES)))
  end
  if extra then labels[#labels + 1] = extra end
  out[#out + 1] = format("%s%s{%s} %s\n", F.name, suffix, concat(labels, ","), number_text(value))
end

local function render_series(out, F, S)
  if F.kind ~= "histogram" then return sample(out, F, S, "", nil, S.value) end
  local total = 0
  for i, c in ipairs(S.counts) do
    total = total + c
    local le = F.buckets[i] and number_text(F.buckets[i]) or "+Inf"
    sample(out, F, S, "_bucket", format('le="%s"', le), total)
  end
  sample(out, F, S, "_sum", nil, S.value)
  sample(out, F, S, "_count", nil, total)
end

-- Label values in the order the host sorts them.
local function before(a, b)
  for i = 1, #a.values do
    if a.values[i] ~= b.values[i] then return a.values[i] < b.values[i] end
  end
  return false
end

--- The script metrics as the host's /metrics endpoint lists them (the
-- part after luaecho's own series): families by name, series by label
-- values, every series with worker="1".
function M.render()
  local families = {}
  for _, F in pairs(W.metrics.families) do families[#families + 1] = F end
  sort(families, function(a, b) return a.name < b.name end)
  local out = {}
  for _, F in ipairs(families) do
    out[#out + 1] = format("# HELP %s %s\n# TYPE %s %s\n", F.name, (F.help:gsub("[\\\n]", HELP_ESCAPES)), F.name,
      F.kind)
    local series = {}
    for _, S in pairs(F.by_key) do series[#series + 1] = S end
    sort(series, before)
    for _, S in ipairs(series) do render_series(out, F, S) end
  end
  return concat(out)
end

return M
