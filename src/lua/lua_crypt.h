/* lua_crypt.h — password hash functions of the `kasi` library
 * (kasi.crypt_verify, kasi.crypt_check), for authentication plugins. */
#ifndef KASI_LUA_CRYPT_H
#define KASI_LUA_CRYPT_H

#include <lua.h>

/* Add the functions to the table on top of the stack (the kasi table). */
void lcrypt_open(lua_State *L);

/* 0 when s is a crypt(3) hash of an accepted method ("$y$...", "$6$...",
 * "$2b$..."); else -1 with a reason. Plaintext and legacy DES/MD5 fail. */
int lcrypt_hash_ok(const char *s, const char **why);

#endif
