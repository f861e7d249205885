/*
 * utils/uv_timers — see the header.
 */
#include "utils/uv_timers.h"

#include <stdlib.h>
#include <time.h>

struct uv_timer_entry {
    uv_timer_t handle;
    struct uv_timers *owner;
    void (*cb)(void *arg);
    void *arg;
    struct uv_timer_entry *prev, *next;
};

void uv_timers_init(struct uv_timers *t, uv_loop_t *loop)
{
    t->loop = loop;
    t->pending = NULL;
    t->closing = 0;
    t->offset_ms = 0;
}

int64_t uv_timers_now_ms(void *timers)
{
    struct uv_timers *t = timers;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + (t != NULL ? t->offset_ms : 0);
}

static void unlink_entry(struct uv_timer_entry *e)
{
    if (e->prev != NULL) e->prev->next = e->next;
    else e->owner->pending = e->next;
    if (e->next != NULL) e->next->prev = e->prev;
    e->prev = e->next = NULL;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_fire(uv_timer_t *h)
{
    struct uv_timer_entry *e = h->data;
    unlink_entry(e);
    void (*cb)(void *) = e->cb;
    void *arg = e->arg;
    uv_close((uv_handle_t *)h, on_closed);
    cb(arg);
}

int uv_timers_after(void *timers, uint64_t delay_ms, void (*cb)(void *), void *cb_arg)
{
    struct uv_timers *t = timers;
    if (t->closing) return -1;
    struct uv_timer_entry *e = calloc(1, sizeof(*e));
    if (e == NULL) return -1;
    if (uv_timer_init(t->loop, &e->handle) != 0) {
        free(e);
        return -1;
    }
    e->handle.data = e;
    e->owner = t;
    e->cb = cb;
    e->arg = cb_arg;
    if (uv_timer_start(&e->handle, on_fire, delay_ms, 0) != 0) {
        uv_close((uv_handle_t *)&e->handle, on_closed);
        return -1;
    }
    e->next = t->pending;
    if (t->pending != NULL) t->pending->prev = e;
    t->pending = e;
    return 0;
}

void uv_timers_close(struct uv_timers *t)
{
    t->closing = 1;
    while (t->pending != NULL) {
        struct uv_timer_entry *e = t->pending;
        unlink_entry(e);
        uv_close((uv_handle_t *)&e->handle, on_closed);
    }
}
