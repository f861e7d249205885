/*
 * fuzz/fuzz_util — small helpers shared by the libFuzzer targets in fuzz/.
 *
 * Header-only (static inline) so every target stays a single translation unit:
 * the libFuzzer entry point prototypes (the build uses -Wmissing-prototypes),
 * a NUL-terminated copy of the input, a logger that formats every line at debug
 * level (so attacker-controlled text also runs through the log formatter) and
 * writes it to /dev/null, and a splitter for inputs made of several parts.
 */
#ifndef FOLLOWUPD_FUZZ_UTIL_H
#define FOLLOWUPD_FUZZ_UTIL_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "utils/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* malloc'd copy with a terminating NUL (abort on OOM: a harness failure, not a finding). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL) abort();
    if (size > 0) memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Debug-level logger writing to /dev/null; free with fuzz_logger_free. */
static inline void fuzz_logger_init(struct logger *lg)
{
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd < 0) abort();
    logger_init(lg, LOG_LEVEL_DEBUG, fd);
}

static inline void fuzz_logger_free(struct logger *lg)
{
    int fd = lg->fd;
    logger_free(lg);
    close(fd);
}

/* Split off the next part of a multi-part input: the bytes up to the next
 * separator byte (or the end).  Advances the input past the separator. */
static inline void fuzz_next_part(const uint8_t **data, size_t *size, uint8_t sep, const uint8_t **part,
                                  size_t *part_len)
{
    const uint8_t *end = *size > 0 ? memchr(*data, sep, *size) : NULL;
    size_t n = end != NULL ? (size_t)(end - *data) : *size;
    *part = *data;
    *part_len = n;
    size_t consumed = end != NULL ? n + 1 : n;
    *data += consumed;
    *size -= consumed;
}

#endif
