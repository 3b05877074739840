/*
 * runtime.h - the Lua state of one loop: opening it, loading handler
 * scripts, and the one protected call every C-to-Lua call goes through.
 */
#ifndef LUAECHO_RUNTIME_H
#define LUAECHO_RUNTIME_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop_context;

/* A failed call: the bare message (what connection_lost() gets) and the
 * message with its traceback (what the log gets). Both malloc'd. */
struct runtime_error {
    enum { RUNTIME_ERROR_SCRIPT, RUNTIME_ERROR_TIMEOUT, RUNTIME_ERROR_MEMORY } kind;
    char *message;
    char *traceback;
};

/* Open a Lua state with the standard libraries and package.path pointing at
 * the bundled Lua files in 'lua_dir', then call 'preload' (given from above:
 * it preloads luaecho.core) in it. 'memory_limit' caps what it may allocate
 * (bytes, 0: no cap); 'timeout_ms' interrupts a runtime_call that runs
 * longer (0: never). NULL when out of memory. */
lua_State *runtime_open(const char *lua_dir, struct loop_context *ctx, size_t memory_limit, uint64_t timeout_ms,
                        lua_CFunction preload);
void runtime_close(lua_State *L);
/* The context of the loop L runs on, as given to runtime_open. */
struct loop_context *runtime_context(lua_State *L);
/* Bytes the state holds now. */
size_t runtime_memory(lua_State *L);

/* The one way in: call fn(ud) under lua_pcall with a traceback handler.
 * Returns 0, or -1 and fills 'err' (when not NULL; free with
 * runtime_error_free). The stack is as it was. [-0, +0, -] */
int runtime_call(lua_State *L, lua_CFunction fn, void *ud, struct runtime_error *err);
void runtime_error_free(struct runtime_error *err);
/* What a failure leads to is failure.c's to decide. */

/* Load a handler script and run it in a fresh environment. On success push
 * the Protocol table it returned (a streams function is wrapped into one by
 * luaecho.streams). Raises with "path:line: message" on failure. [-0, +1, e] */
void runtime_load_handler(lua_State *L, const char *path);
/* The same, from the script's text in memory, 'chunkname' naming it in
 * messages ("@path" for a file, as Lua does). [-0, +1, e] */
void runtime_load_handler_buffer(lua_State *L, const char *source, size_t len, const char *chunkname);

/* Let scripts in 'dir' require their own modules: dir/?.lua first. [-0, +0, e] */
void runtime_add_script_dir(lua_State *L, const char *dir);
/* Take out of package.loaded every module found in 'dir' (luaecho's own
 * libraries excepted), so the next require loads it afresh. Returns a
 * registry reference to what was taken, for runtime_restore_modules (or
 * luaL_unref once the new code is in). [-0, +0, e] */
int runtime_forget_modules(lua_State *L, const char *dir);
/* Undo runtime_forget_modules: the modules of 'dir' loaded since go, the
 * ones taken come back, and 'ref' is released. [-0, +0, e] */
void runtime_restore_modules(lua_State *L, const char *dir, int ref);
/* Make os.exit() raise a clear error (for served handlers). [-0, +0, e] */
void runtime_refuse_exit(lua_State *L);

#endif
