/*
 * utils/uv_timers — one-shot timers on the loop for code that must not own
 * uv handles itself (services get them through clock_port.after).  Each
 * pending timer is a uv_timer_t in a list; uv_timers_close() closes every
 * pending one without firing it, so shutdown leaves no handle behind.
 */
#ifndef FOLLOWUPD_UTILS_UV_TIMERS_H
#define FOLLOWUPD_UTILS_UV_TIMERS_H

#include <stdint.h>
#include <uv.h>

struct uv_timer_entry;

struct uv_timers {
    uv_loop_t *loop;
    struct uv_timer_entry *pending;
    int closing;
    int64_t offset_ms;     /* added to the wall clock (test hook: FOLLOWUPD_TEST_CLOCK_OFFSET_MS) */
};

void uv_timers_init(struct uv_timers *t, uv_loop_t *loop);
/* Wall-clock milliseconds since the epoch (plus offset). */
int64_t uv_timers_now_ms(void *timers);
/* clock_port.after: run cb(arg) once after delay_ms. 0 or -1. */
int uv_timers_after(void *timers, uint64_t delay_ms, void (*cb)(void *), void *cb_arg);
/* Close every pending timer without firing it. */
void uv_timers_close(struct uv_timers *t);

#endif
