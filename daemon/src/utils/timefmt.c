/*
 * utils/timefmt — ISO 8601 / RFC 3339 formatting and parsing (see timefmt.h).
 * Calendar arithmetic uses the proleptic Gregorian days-from-civil algorithm
 * (era-based, exact for every year), so there is no dependency on timegm(),
 * the TZ environment or the C library's locale.
 */
#include "utils/timefmt.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MS_PER_DAY 86400000LL
#define MIN_EPOCH_MS (-62167219200000LL)  /* 0000-01-01T00:00:00.000Z */
#define MAX_EPOCH_MS 253402300799999LL    /* 9999-12-31T23:59:59.999Z */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Days since 1970-01-01 of y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return (m == 2 && is_leap(y)) ? 29 : days[m - 1];
}

int timefmt_iso_ms(int64_t epoch_ms, char *out, size_t outlen)
{
    if (out == NULL || outlen < TIMEFMT_ISO_LEN) return -1;
    if (epoch_ms < MIN_EPOCH_MS || epoch_ms > MAX_EPOCH_MS) return -1;
    int64_t days = floor_div(epoch_ms, MS_PER_DAY);
    int64_t ms_of_day = epoch_ms - days * MS_PER_DAY;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    int n = snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)y, m, d,
                     (int)(ms_of_day / 3600000), (int)(ms_of_day / 60000 % 60),
                     (int)(ms_of_day / 1000 % 60), (int)(ms_of_day % 1000));
    return (n == TIMEFMT_ISO_LEN - 1) ? 0 : -1;
}

/* Reads exactly n digits at *p; advances *p. */
static bool read_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool expect_char(const char **p, char c)
{
    if (**p != c) return false;
    (*p)++;
    return true;
}

/* ".ddd..." → milliseconds, truncating beyond the third digit. */
static bool read_fraction(const char **p, int *ms)
{
    *ms = 0;
    if (**p != '.') return true;
    (*p)++;
    int digits = 0;
    while (**p >= '0' && **p <= '9') {
        if (digits < 3) *ms = *ms * 10 + (**p - '0');
        digits++;
        (*p)++;
    }
    if (digits == 0 || digits > 9) return false;
    for (int i = digits; i < 3; i++) *ms *= 10;
    return true;
}

/* Zone designator → offset east of UTC in seconds. Consumes the rest of the text. */
static bool read_zone(const char **p, int *offset_s)
{
    *offset_s = 0;
    if (**p == 'Z' || **p == 'z') {
        (*p)++;
        return true;
    }
    if (**p != '+' && **p != '-') return false;
    int sign = (**p == '-') ? -1 : 1;
    (*p)++;
    int hh, mm = 0, ss = 0;
    if (!read_digits(p, 2, &hh)) return false;
    if (**p == ':') {
        (*p)++;
        if (!read_digits(p, 2, &mm)) return false;
        if (**p == ':') {
            (*p)++;
            if (!read_digits(p, 2, &ss)) return false;
        }
    } else if (**p >= '0' && **p <= '9') {
        if (!read_digits(p, 2, &mm)) return false;
    }
    if (hh > 15 || mm > 59 || ss > 59) return false;
    *offset_s = sign * (hh * 3600 + mm * 60 + ss);
    return true;
}

int timefmt_parse(const char *s, int64_t *epoch_ms)
{
    if (s == NULL || epoch_ms == NULL) return -1;
    const char *p = s;
    int y, mo, d, h, mi, sec, ms, off;
    if (!read_digits(&p, 4, &y) || !expect_char(&p, '-') || !read_digits(&p, 2, &mo) ||
        !expect_char(&p, '-') || !read_digits(&p, 2, &d))
        return -1;
    if (*p != 'T' && *p != 't' && *p != ' ') return -1;
    p++;
    if (!read_digits(&p, 2, &h) || !expect_char(&p, ':') || !read_digits(&p, 2, &mi) ||
        !expect_char(&p, ':') || !read_digits(&p, 2, &sec))
        return -1;
    if (!read_fraction(&p, &ms) || !read_zone(&p, &off) || *p != '\0') return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return -1;
    if (h > 23 || mi > 59 || sec > 59) return -1;
    int64_t days = days_from_civil(y, mo, d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - off;
    *epoch_ms = secs * 1000 + ms;
    return 0;
}

/* The month of a three-letter name ("Jan".."Dec"), 1..12, or 0. */
static int month_of(const char *p)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int m = 0; m < 12; m++)
        if (strncmp(p, names + 3 * m, 3) == 0) return m + 1;
    return 0;
}

int timefmt_parse_http_date(const char *s, int64_t *epoch_ms)
{
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" — exactly 29 characters */
    if (s == NULL || epoch_ms == NULL || strlen(s) != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' ||
        s[11] != ' ' || s[16] != ' ' || strcmp(s + 25, " GMT") != 0)
        return -1;
    const char *p = s + 5;
    int d, mo = month_of(s + 8), y, h, mi, sec;
    if (!read_digits(&p, 2, &d)) return -1;
    p = s + 12;
    if (mo == 0 || !read_digits(&p, 4, &y) || !expect_char(&p, ' ') || !read_digits(&p, 2, &h) ||
        !expect_char(&p, ':') || !read_digits(&p, 2, &mi) || !expect_char(&p, ':') || !read_digits(&p, 2, &sec))
        return -1;
    if (d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60) return -1;
    if (sec == 60) sec = 59;   /* a leap second: the instant before */
    *epoch_ms = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) * 1000;
    return 0;
}

int64_t timefmt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void timefmt_duration(int64_t ms, char *out, size_t outlen)
{
    uint64_t v = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
    if (v < 1000) {
        snprintf(out, outlen, "%llums", (unsigned long long)v);
        return;
    }
    uint64_t s = v / 1000;
    static const struct { uint64_t seconds; const char *name; } units[] = {
        {86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (s < units[i].seconds) continue;
        uint64_t big = s / units[i].seconds, rest = s % units[i].seconds;
        if (i + 1 < sizeof(units) / sizeof(units[0]) && rest / units[i + 1].seconds > 0)
            snprintf(out, outlen, "%llu%s %llu%s", (unsigned long long)big, units[i].name,
                     (unsigned long long)(rest / units[i + 1].seconds), units[i + 1].name);
        else
            snprintf(out, outlen, "%llu%s", (unsigned long long)big, units[i].name);
        return;
    }
}
