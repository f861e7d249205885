/*
 * shared/db/db_notify — channel name of a tenant schema (see db_notify.h).
 * MD5 via OpenSSL EVP: used as a name hash, not for security.
 */
#include "shared/db/db_notify.h"

#include <openssl/evp.h>
#include <string.h>

static int md5_hex(const char *data, size_t len, char hex[33])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (EVP_Digest(data, len, digest, &dlen, EVP_md5(), NULL) != 1 || dlen != 16) return -1;
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < dlen; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 0x0f];
    }
    hex[32] = '\0';
    return 0;
}

int db_channel_for_schema(const char *schema, char out[64])
{
    out[0] = '\0';
    if (schema == NULL || *schema == '\0') return -1;
    char hex[33];
    if (md5_hex(schema, strlen(schema), hex) != 0) return -1;
    memcpy(out, DB_CHANNEL_PREFIX, sizeof(DB_CHANNEL_PREFIX) - 1);
    memcpy(out + sizeof(DB_CHANNEL_PREFIX) - 1, hex, sizeof(hex));
    return 0;
}
