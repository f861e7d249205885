/*
 * Unit tests of the capture check: which installed NOTIFY triggers differ
 * from the configuration (followup_capture_difference, pure).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "features/deals_pipeline/services/followup_capture_service.h"

static char *types[] = {"follow_up", "callback"};

static struct config cfg_with(enum capture_mode mode, int within)
{
    struct config c;
    memset(&c, 0, sizeof(c));
    c.followup_booking_types = (struct strlist){.items = types, .n = 2};
    c.capture_mode = mode;
    c.capture_notify_within_s = within;
    return c;
}

static void installed(struct capture_trigger t[3], const char *args, bool enabled)
{
    static const char *const names[] = {"followupd_notify_delete", "followupd_notify_insert",
                                        "followupd_notify_update"};
    for (int i = 0; i < 3; i++) {
        memset(&t[i], 0, sizeof(t[i]));
        strcpy(t[i].name, names[i]);
        strcpy(t[i].args, args);
        t[i].enabled = enabled;
    }
}

static void difference__notify_mode_matching_arguments__none(void **state)
{
    (void)state;
    struct config c = cfg_with(CAPTURE_NOTIFY, 900);
    struct capture_trigger t[3];
    char detail[4096];
    installed(t, "follow_up,callback\\000900\\000", true);
    assert_null(followup_capture_difference(&c, t, 3, detail, sizeof(detail)));
}

static void difference__other_types_window_missing_or_disabled__reported(void **state)
{
    (void)state;
    struct config c = cfg_with(CAPTURE_NOTIFY, 900);
    struct capture_trigger t[3];
    char detail[4096];
    installed(t, "follow_up\\000900\\000", true);
    assert_non_null(followup_capture_difference(&c, t, 3, detail, sizeof(detail)));
    assert_non_null(strstr(detail, "installed 'follow_up\\000900\\000'"));
    installed(t, "follow_up,callback\\0000\\000", true);
    assert_non_null(followup_capture_difference(&c, t, 3, detail, sizeof(detail)));
    installed(t, "", true);   /* a pre-007 trigger without arguments */
    assert_non_null(followup_capture_difference(&c, t, 3, detail, sizeof(detail)));
    installed(t, "follow_up,callback\\000900\\000", false);
    assert_non_null(followup_capture_difference(&c, t, 3, detail, sizeof(detail)));
    installed(t, "follow_up,callback\\000900\\000", true);
    assert_non_null(followup_capture_difference(&c, t, 2, detail, sizeof(detail)));
    assert_non_null(followup_capture_difference(&c, t, 0, detail, sizeof(detail)));
}

static void difference__poll_mode__only_no_triggers_matches(void **state)
{
    (void)state;
    struct config c = cfg_with(CAPTURE_POLL, 900);
    struct capture_trigger t[3];
    char detail[4096];
    installed(t, "follow_up,callback\\000900\\000", true);
    assert_null(followup_capture_difference(&c, t, 0, detail, sizeof(detail)));
    assert_non_null(followup_capture_difference(&c, t, 1, detail, sizeof(detail)));
    assert_non_null(followup_capture_difference(&c, t, 3, detail, sizeof(detail)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(difference__notify_mode_matching_arguments__none),
        cmocka_unit_test(difference__other_types_window_missing_or_disabled__reported),
        cmocka_unit_test(difference__poll_mode__only_no_triggers_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
