/*
 * utils/base64 — hand-written RFC 4648 codec (see base64.h).  One encoder and
 * one decoder parameterised by the alphabet; the decoder maps characters through
 * a 256-entry table built from the alphabet string so both alphabets share the
 * same strict rules.
 */
#include "utils/base64.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char std_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *encode_with(const char *alphabet, int pad, const void *data, size_t len)
{
    const unsigned char *in = data;
    if (len > (SIZE_MAX - 1) / 4 * 3 - 3) return NULL;
    size_t cap = (len + 2) / 3 * 4 + 1;
    char *out = malloc(cap);
    if (out == NULL) return NULL;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    size_t rest = len - i;
    if (rest > 0) {
        uint32_t v = (uint32_t)in[i] << 16 | (rest == 2 ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        if (rest == 2) out[o++] = alphabet[v >> 6 & 63];
        if (pad) {
            if (rest == 1) out[o++] = '=';
            out[o++] = '=';
        }
    }
    out[o] = '\0';
    return out;
}

char *base64_encode(const void *data, size_t len)
{
    return encode_with(std_alphabet, 1, data, len);
}

char *base64url_encode(const void *data, size_t len)
{
    return encode_with(url_alphabet, 0, data, len);
}

static void build_table(const char *alphabet, signed char table[256])
{
    memset(table, -1, 256);
    for (int i = 0; i < 64; i++) table[(unsigned char)alphabet[i]] = (signed char)i;
}

/* Length of the data part once valid padding is stripped, or (size_t)-1. */
static size_t strip_padding(const char *in, size_t in_len, int pad_required)
{
    size_t pads = 0;
    while (pads < in_len && pads < 3 && in[in_len - 1 - pads] == '=') pads++;
    if (pads == 3) return (size_t)-1;
    if (pads > 0 && in_len % 4 != 0) return (size_t)-1;
    if (pad_required && in_len % 4 != 0) return (size_t)-1;
    size_t data_len = in_len - pads;
    if (pads > 0 && (data_len % 4) + pads != 4) return (size_t)-1;
    if (data_len % 4 == 1) return (size_t)-1;
    return data_len;
}

static int decode_with(const char *alphabet, int pad_required, const char *in, size_t in_len,
                       unsigned char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (in == NULL) return -1;
    size_t data_len = strip_padding(in, in_len, pad_required);
    if (data_len == (size_t)-1) return -1;
    signed char table[256];
    build_table(alphabet, table);
    unsigned char *buf = malloc(data_len / 4 * 3 + 3 + 1);
    if (buf == NULL) return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < data_len; i++) {
        signed char v = table[(unsigned char)in[i]];
        if (v < 0) goto fail;
        acc = (acc << 6 | (uint32_t)v) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)(acc >> bits & 0xFF);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) goto fail; /* non-canonical tail */
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return 0;
fail:
    free(buf);
    return -1;
}

int base64_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len)
{
    return decode_with(std_alphabet, 1, in, in_len, out, out_len);
}

int base64url_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len)
{
    return decode_with(url_alphabet, 0, in, in_len, out, out_len);
}
