/*
 * utils/timefmt — timestamps as text, in UTC, with millisecond precision.
 *
 * timefmt_iso_ms() writes the canonical form other services compute the same
 * way (JavaScript's Date.prototype.toISOString()): "YYYY-MM-DDTHH:MM:SS.mmmZ",
 * always UTC, always three fraction digits.  Instants before 1970 round toward
 * the past (-1 ms is 1969-12-31T23:59:59.999Z).  Years 0000..9999 only.
 *
 * timefmt_parse() reads RFC 3339 ("2026-11-28T16:00:00Z",
 * "2026-11-28t16:00:00.5+05:30") and PostgreSQL's timestamptz text output
 * ("2026-11-28 16:00:00+00", "2026-11-28 16:00:00.123456-03:30") into epoch
 * milliseconds.  A zone is required ('Z'/'z' or ±HH, ±HHMM, ±HH:MM, ±HH:MM:SS).
 * Fraction digits beyond milliseconds are truncated, as JavaScript's Date and
 * node-postgres do, so a PostgreSQL microsecond value maps to the same instant
 * the Node services see.  Calendar fields are range-checked (leap years
 * included); 'infinity', BC dates and leap seconds are rejected.
 *
 * timefmt_parse_http_date() reads an HTTP-date in the IMF-fixdate form of RFC
 * 9110 ("Sun, 06 Nov 1994 08:49:37 GMT", what senders must generate); the
 * obsolete RFC 850 and asctime forms are refused.
 * All three parsers return 0 on success, -1 on invalid input.
 */
#ifndef FOLLOWUPD_UTILS_TIMEFMT_H
#define FOLLOWUPD_UTILS_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

#define TIMEFMT_ISO_LEN 25 /* "YYYY-MM-DDTHH:MM:SS.mmmZ" + NUL */

int timefmt_iso_ms(int64_t epoch_ms, char *out, size_t outlen);
int timefmt_parse(const char *s, int64_t *epoch_ms);
int timefmt_parse_http_date(const char *s, int64_t *epoch_ms);

/* A duration for people: "850ms", "42s", "3m 10s", "2h 5m", "3d 4h" (two units at most, rounded down; a
 * negative duration is written as its absolute value). */
void timefmt_duration(int64_t ms, char *out, size_t outlen);

/* Wall-clock now in epoch milliseconds (CLOCK_REALTIME). */
int64_t timefmt_now_ms(void);

#endif
