/* http_assets.c — the graph page (src/www/) embedded into the binary with
 * the assembler's .incbin, so that kasi needs no data directory and the
 * page works offline (no CDN). The Makefile makes this object depend on
 * the files of src/www; paths are relative to the repository root, where
 * the build runs. */
#include "net/http.h"

#include <string.h>

#define KASI_ASSET(sym, file)                                   \
    __asm__(".section .rodata\n"                                \
            ".balign 16\n"                                      \
            ".global " #sym "\n" #sym ":\n"                     \
            ".incbin \"" file "\"\n"                            \
            ".global " #sym "_end\n" #sym "_end:\n"             \
            ".byte 0\n"                                         \
            ".previous\n");                                     \
    extern const char sym[], sym##_end[]

KASI_ASSET(kasi_www_index, "src/www/index.html");
KASI_ASSET(kasi_www_app, "src/www/app.js");
KASI_ASSET(kasi_www_style, "src/www/style.css");

const struct http_asset *http_asset_find(const char *path)
{
    static const struct http_asset assets[] = {
        { "/", "text/html; charset=utf-8", kasi_www_index, kasi_www_index_end },
        { "/index.html", "text/html; charset=utf-8", kasi_www_index, kasi_www_index_end },
        { "/app.js", "text/javascript; charset=utf-8", kasi_www_app, kasi_www_app_end },
        { "/style.css", "text/css; charset=utf-8", kasi_www_style, kasi_www_style_end },
    };
    for (size_t i = 0; i < sizeof assets / sizeof assets[0]; i++)
        if (!strcmp(assets[i].path, path))
            return &assets[i];
    return NULL;
}
