/*
 * tests/unit/support/secret_pieces — the leak check of the secrets tests: a
 * text leaks a secret when it holds the secret or any piece of it of
 * LOG_SECRET_MIN (4) or more bytes, the unit the logger redacts.
 */
#ifndef FOLLOWUPD_TESTS_SECRET_PIECES_H
#define FOLLOWUPD_TESTS_SECRET_PIECES_H

/* The first LOG_SECRET_MIN-byte piece of secret found in text (static buffer), or NULL. */
const char *secret_piece_in(const char *text, const char *secret);

/* Fails the running cmocka test, naming the piece and `where`, when text leaks secret. */
void assert_no_secret_piece(const char *text, const char *secret, const char *where);

#endif
