--- Files and scratch directories for integration specs.
-- Whole-file reads and writes, the two ways an editor saves (in place, or
-- a new file renamed over the old), and scratch directories: a fresh
-- temporary directory a spec serves its scripts from and edits them in, so
-- the repository is never touched. Every scratch directory is removed, with
-- all it holds, by remove_scratches() in after_each, even when a spec failed.
-- @usage
--   local scratch = files.scratch("reload")
--   local script = scratch:write("handler.lua", files.read(server.fixture("reload/prefix.lua")))
--   scratch:replace("handler.lua", "return {}\n")   -- what --watch sees
--   after_each(files.remove_scratches)
local uv = require "luv"

local M = {}

--- The whole of the file at `path`; raises if it cannot be read.
function M.read(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

--- The whole of the file at `path`, or "" while it does not exist (a
-- child's output file that is not there yet, or already removed).
function M.read_if_present(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local text = f:read("a")
  f:close()
  return text
end

--- Write `text` to `path` in place, as an editor that saves into the same
-- file does: truncate, then `pieces` writes (default 1), each flushed to
-- the file at once. Returns `path`.
function M.write(path, text, pieces)
  pieces = pieces or 1
  local f = assert(io.open(path, "wb"))
  local size = math.max(1, math.ceil(#text / pieces))
  for i = 1, #text, size do
    assert(f:write(text:sub(i, i + size - 1)))
    assert(f:flush())
  end
  assert(f:close())
  return path
end

--- Put `text` at `path` whole, as editors that save atomically do: write a
-- hidden file beside it, then rename it over `path` (a new inode takes the
-- name), so no reader, nor --watch, ever sees half of it. Returns `path`.
function M.replace(path, text)
  local dir, name = path:match("^(.*)/([^/]+)$")
  local temp = (dir or ".") .. "/." .. (name or path) .. ".new"
  M.write(temp, text)
  assert(os.rename(temp, path))
  return path
end

-- Remove `path` and, if it is a directory, everything below it.
local function remove_tree(path)
  local stat = uv.fs_lstat(path)
  if not stat then return end
  if stat.type == "directory" then
    local entries = uv.fs_scandir(path)
    while entries do
      local name = uv.fs_scandir_next(entries)
      if not name then break end
      remove_tree(path .. "/" .. name)
    end
    uv.fs_rmdir(path)
  else
    os.remove(path)
  end
end

-- Scratch directories made and not yet removed.
local scratches = {}

local Scratch = {}
Scratch.__index = Scratch

--- A fresh temporary directory, $TMPDIR/luaecho-TAG-XXXXXX; scratch.dir is
-- its path.
function M.scratch(tag)
  local base = os.getenv("TMPDIR") or "/tmp"
  local dir = assert(uv.fs_mkdtemp(("%s/luaecho-%s-XXXXXX"):format(base, tag or "spec")))
  local scratch = setmetatable({ dir = dir }, Scratch)
  scratches[scratch] = true
  return scratch
end

--- The path of NAME inside the directory.
function Scratch:path(name)
  return self.dir .. "/" .. name
end

--- files.write into the directory; returns the file's path.
function Scratch:write(name, text, pieces)
  return M.write(self:path(name), text, pieces)
end

--- files.replace inside the directory; returns the file's path.
function Scratch:replace(name, text)
  return M.replace(self:path(name), text)
end

--- Remove the directory and everything in it. Safe to call more than once.
function Scratch:remove()
  remove_tree(self.dir)
  scratches[self] = nil
end

--- Remove every scratch directory still there; for after_each / teardown.
function M.remove_scratches()
  for scratch in pairs(scratches) do scratch:remove() end
end

return M
