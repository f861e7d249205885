/*
 * tests/unit/support/secret_pieces — see the header.
 */
#include "secret_pieces.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "utils/log.h"

const char *secret_piece_in(const char *text, const char *secret)
{
    static char piece[LOG_SECRET_MIN + 1];
    size_t n = strlen(secret);
    for (size_t i = 0; i + LOG_SECRET_MIN <= n; i++) {
        memcpy(piece, secret + i, LOG_SECRET_MIN);
        piece[LOG_SECRET_MIN] = '\0';
        if (strstr(text, piece) != NULL) return piece;
    }
    return NULL;
}

void assert_no_secret_piece(const char *text, const char *secret, const char *where)
{
    const char *piece = secret_piece_in(text, secret);
    if (piece != NULL) fail_msg("%s leaks \"%s\" of the secret: %s", where, piece, text);
}
