-- luacheck configuration: Lua 5.4 everywhere; busted's globals in specs.
std = "lua54"
max_line_length = 120
files["spec/"] = { std = "+busted" }
-- Deliberately broken: the specs check that luaecho refuses it.
exclude_files = { "spec/fixtures/bad_syntax.lua" }
