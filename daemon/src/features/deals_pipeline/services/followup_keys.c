/*
 * deals_pipeline/services/followup_keys — see followup_keys.h.
 */
#include "features/deals_pipeline/services/followup_keys.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include "utils/timefmt.h"

#define IDEMPOTENCY_INPUT_MAX 300

int followup_iso_time(int64_t epoch_ms, char out[ISO_TIME_LEN])
{
    return timefmt_iso_ms(epoch_ms, out, ISO_TIME_LEN);
}

int followup_idempotency_key(const char *tenant_id, const char *booking_id, int64_t scheduled_at_ms, char *out,
                             size_t cap)
{
    char iso[ISO_TIME_LEN];
    if (followup_iso_time(scheduled_at_ms, iso) != 0) return -1;
    int n = snprintf(out, cap, "followup:%s:%s:%s", tenant_id, booking_id, iso);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

int followup_task_id(const char *idempotency_key, int generation, char out[TASK_ID_LEN])
{
    char input[IDEMPOTENCY_INPUT_MAX];
    int n = generation == 0 ? snprintf(input, sizeof(input), "%s", idempotency_key)
                            : snprintf(input, sizeof(input), "%s#%d", idempotency_key, generation);
    if (n < 0 || (size_t)n >= sizeof(input)) return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(input, (size_t)n, md, &len, EVP_sha256(), NULL) != 1 || len != 32) return -1;
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * len] = '\0';
    return 0;
}

bool followup_key_names_booking(const char *key, const char *tenant_id, const char *booking_id)
{
    char prefix[IDEMPOTENCY_INPUT_MAX], expected[IDEMPOTENCY_INPUT_MAX];
    int n = snprintf(prefix, sizeof(prefix), "followup:%s:%s:", tenant_id, booking_id);
    int64_t at_ms = 0;
    return key != NULL && n > 0 && (size_t)n < sizeof(prefix) && strncmp(key, prefix, (size_t)n) == 0 &&
           timefmt_parse(key + n, &at_ms) == 0 &&
           followup_idempotency_key(tenant_id, booking_id, at_ms, expected, sizeof(expected)) == 0 &&
           strcmp(expected, key) == 0;
}

bool followup_is_uuid(const char *s)
{
    if (s == NULL || strlen(s) != 36) return false;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return false;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

int followup_booking_partition(const char *booking_id, int partitions)
{
    if (!followup_is_uuid(booking_id) || partitions < 1 || partitions > FOLLOWUP_PARTITIONS_MAX) return -1;
    uint32_t v = 0;
    for (int i = 0; i < 8; i++) {
        int c = tolower((unsigned char)booking_id[i]);
        v = (v << 4) | (uint32_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return (int)(v % (uint32_t)partitions);
}
