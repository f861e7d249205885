/* Unit tests for utils/sd_notify: datagrams reach a test-owned AF_UNIX socket (filesystem path and abstract
 * name), address validation, watchdog environment parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "utils/sd_notify.h"

struct receiver {
    int fd;
    char dir[64];
    char path[128];
    char name[128]; /* what goes into NOTIFY_SOCKET */
};

static void receiver_open_path(struct receiver *r)
{
    snprintf(r->dir, sizeof(r->dir), "/tmp/sdnotify-test-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    snprintf(r->path, sizeof(r->path), "%s/notify", r->dir);
    snprintf(r->name, sizeof(r->name), "%s", r->path);
    r->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(r->fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", r->path);
    assert_int_equal(bind(r->fd, (struct sockaddr *)&a, sizeof(a)), 0);
}

static void receiver_open_abstract(struct receiver *r)
{
    r->dir[0] = r->path[0] = '\0';
    snprintf(r->name, sizeof(r->name), "@followupd-test-%ld-%ld", (long)getpid(), (long)time(NULL));
    r->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(r->fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(r->name);
    memcpy(a.sun_path, r->name, n);
    a.sun_path[0] = '\0';
    assert_int_equal(bind(r->fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)), 0);
}

static void receiver_close(struct receiver *r)
{
    close(r->fd);
    if (r->path[0] != '\0') unlink(r->path);
    if (r->dir[0] != '\0') rmdir(r->dir);
}

/* The next datagram (bounded wait: the send already happened, this only guards a broken test). */
static void expect_datagram(struct receiver *r, const char *want)
{
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    char buf[512];
    ssize_t n = recv(r->fd, buf, sizeof(buf) - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void sd_notifier_send__filesystem_socket__one_datagram_per_message(void **state)
{
    (void)state;
    struct receiver r;
    receiver_open_path(&r);
    struct sd_notifier n;
    assert_int_equal(sd_notifier_open(&n, r.name), 0);
    assert_true(sd_notifier_enabled(&n));
    assert_int_equal(sd_notifier_send(&n, "READY=1\nSTATUS=listening"), 0);
    assert_int_equal(sd_notifier_send(&n, "WATCHDOG=1"), 0);
    expect_datagram(&r, "READY=1\nSTATUS=listening");
    expect_datagram(&r, "WATCHDOG=1");
    sd_notifier_close(&n);
    assert_false(sd_notifier_enabled(&n));
    receiver_close(&r);
}

static void sd_notifier_send__abstract_socket__at_sign_becomes_nul(void **state)
{
    (void)state;
    struct receiver r;
    receiver_open_abstract(&r);
    struct sd_notifier n;
    assert_int_equal(sd_notifier_open(&n, r.name), 0);
    assert_int_equal(sd_notifier_send(&n, "STOPPING=1"), 0);
    expect_datagram(&r, "STOPPING=1");
    sd_notifier_close(&n);
    receiver_close(&r);
}

static void sd_notifier_open__unset_or_empty__disabled_and_send_is_noop(void **state)
{
    (void)state;
    struct sd_notifier n;
    assert_int_equal(sd_notifier_open(&n, NULL), 0);
    assert_false(sd_notifier_enabled(&n));
    assert_int_equal(sd_notifier_send(&n, "READY=1"), 0);
    sd_notifier_close(&n);
    assert_int_equal(sd_notifier_open(&n, ""), 0);
    assert_false(sd_notifier_enabled(&n));
    sd_notifier_close(&n);
}

static void sd_notifier_open__relative_too_long_or_bare__einval(void **state)
{
    (void)state;
    struct sd_notifier n;
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    const char *bad[] = {"relative/path", "/", "@", longpath};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        assert_int_equal(sd_notifier_open(&n, bad[i]), -1);
        assert_int_equal(errno, EINVAL);
        assert_false(sd_notifier_enabled(&n));
    }
}

static void sd_notifier_send__nobody_listening__error(void **state)
{
    (void)state;
    struct sd_notifier n;
    assert_int_equal(sd_notifier_open(&n, "/nonexistent-dir-for-followupd-tests/notify"), 0);
    assert_int_equal(sd_notifier_send(&n, "READY=1"), -1);
    sd_notifier_close(&n);
}

static void sd_watchdog_interval_us__pid_and_value_rules(void **state)
{
    (void)state;
    uint64_t us = 0;
    assert_int_equal(sd_watchdog_interval_us(NULL, NULL, 42, &us), 0);
    assert_int_equal(sd_watchdog_interval_us("", NULL, 42, &us), 0);
    assert_int_equal(sd_watchdog_interval_us("200000", NULL, 42, &us), 1);
    assert_int_equal(us, 200000);
    us = 0;
    assert_int_equal(sd_watchdog_interval_us("30000000", "42", 42, &us), 1);
    assert_int_equal(us, 30000000);
    us = 7;
    assert_int_equal(sd_watchdog_interval_us("200000", "43", 42, &us), 0); /* meant for another process */
    assert_int_equal(us, 7);
    assert_int_equal(sd_watchdog_interval_us("0", NULL, 42, &us), 0);
    assert_int_equal(sd_watchdog_interval_us("-5", NULL, 42, &us), -1);
    assert_int_equal(sd_watchdog_interval_us("12abc", NULL, 42, &us), -1);
    assert_int_equal(sd_watchdog_interval_us("99999999999999999999999", NULL, 42, &us), -1);
    assert_int_equal(sd_watchdog_interval_us("200000", "x", 42, &us), -1);
    assert_int_equal(sd_watchdog_interval_us("200000", "0", 42, &us), -1);
}

static void sd_monotonic_usec__matches_clock_monotonic(void **state)
{
    (void)state;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    uint64_t us = sd_monotonic_usec();
    clock_gettime(CLOCK_MONOTONIC, &b);
    uint64_t lo = (uint64_t)a.tv_sec * 1000000u + (uint64_t)a.tv_nsec / 1000u;
    uint64_t hi = (uint64_t)b.tv_sec * 1000000u + (uint64_t)b.tv_nsec / 1000u;
    assert_true(us >= lo && us <= hi);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sd_notifier_send__filesystem_socket__one_datagram_per_message),
        cmocka_unit_test(sd_notifier_send__abstract_socket__at_sign_becomes_nul),
        cmocka_unit_test(sd_notifier_open__unset_or_empty__disabled_and_send_is_noop),
        cmocka_unit_test(sd_notifier_open__relative_too_long_or_bare__einval),
        cmocka_unit_test(sd_notifier_send__nobody_listening__error),
        cmocka_unit_test(sd_watchdog_interval_us__pid_and_value_rules),
        cmocka_unit_test(sd_monotonic_usec__matches_clock_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
