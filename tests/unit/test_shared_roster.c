/* shared_roster: the group model (modules/shared_roster/sr_model.c): who
 * sees whom, with which subscription and in which roster groups, and the
 * model's token (part of the roster version, RFC 6121 §2.6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../modules/shared_roster/sr_model.h"

/* staff {a, b} shows itself; managers {m} shows staff and itself; all
 * {a, b, m, x} shows nothing (only shown by "lobby", whose member is x). */
static sr_model *build(bool reverse)
{
    sr_model *m = sr_model_new();
    const char *mgr_shows[] = { "staff", "managers", NULL }, *none[] = { NULL }, *lobby_shows[] = { "all", NULL };
    const char *all[] = { "a@h", "b@h", "m@h", "x@h" };
    int staff = sr_model_group(m, "staff", "Staff", NULL);
    int mgr = sr_model_group(m, "managers", "Managers", mgr_shows);
    int everyone = sr_model_group(m, "all", "Everyone", none);
    int lobby = sr_model_group(m, "lobby", NULL, lobby_shows);
    assert_true(staff >= 0 && mgr >= 0 && everyone >= 0 && lobby >= 0);
    const char *staff_m[] = { "a@h", "b@h", "a@h" }; /* a twice: kept once */
    for (int i = 0; i < 3; i++)
        assert_int_equal(sr_model_member(m, staff, staff_m[reverse ? 2 - i : i]), 0);
    assert_int_equal(sr_model_member(m, mgr, "m@h"), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(sr_model_member(m, everyone, all[reverse ? 3 - i : i]), 0);
    assert_int_equal(sr_model_member(m, lobby, "x@h"), 0);
    const char *unknown = "x";
    assert_int_equal(sr_model_finish(m, &unknown), 0);
    assert_null(unknown);
    return m;
}

static unsigned item(const sr_model *m, const char *u, const char *v, const char **names)
{
    return sr_model_item(m, u, v, names, 8);
}

static void test_who_sees_whom(void **state)
{
    sr_model *m = build(false);
    const char *names[8];
    assert_int_equal(item(m, "a@h", "b@h", names), SR_TO | SR_FROM); /* both */
    assert_string_equal(names[0], "Staff");
    assert_null(names[1]);
    assert_int_equal(item(m, "m@h", "a@h", names), SR_TO);           /* m sees staff */
    assert_int_equal(item(m, "a@h", "m@h", names), SR_FROM);         /* staff does not see m */
    assert_null(names[0]);
    assert_int_equal(item(m, "a@h", "a@h", names), 0);               /* never oneself */
    assert_int_equal(item(m, "m@h", "m@h", names), 0);
    /* "all" shows nothing: its members see nobody through it, but the
     * lobby's member x sees them all under the name Everyone */
    assert_int_equal(item(m, "x@h", "a@h", names), SR_TO);
    assert_string_equal(names[0], "Everyone");
    assert_int_equal(item(m, "a@h", "x@h", names), SR_FROM);
    assert_int_equal(item(m, "a@h", "nobody@h", names), 0);
    assert_int_equal(sr_model_group_size(m, 0), 4); /* groups sorted by id: all, lobby, managers, staff */
    assert_string_equal(sr_model_group_id(m, 3), "staff");
    assert_int_equal(sr_model_group_size(m, 3), 2);
    sr_model_free(m);
}

typedef struct seen {
    char jid[16][16];
    unsigned sub[16];
    char names[16][64];
    int n;
} seen;

static int collect(const char *jid, unsigned sub, const char *const *names, void *ud)
{
    seen *s = ud;
    snprintf(s->jid[s->n], sizeof s->jid[0], "%s", jid);
    s->sub[s->n] = sub;
    s->names[s->n][0] = '\0';
    for (const char *const *p = names; *p; p++) {
        strcat(s->names[s->n], *p);
        strcat(s->names[s->n], ";");
    }
    s->n++;
    return 0;
}

static void test_contacts_of_an_account(void **state)
{
    sr_model *m = build(false);
    seen s = { 0 };
    assert_int_equal(sr_model_contacts(m, "m@h", collect, &s), 0);
    assert_int_equal(s.n, 3); /* a and b (to, Staff), x (from: the lobby sees everyone) */
    assert_string_equal(s.jid[0], "a@h");
    assert_int_equal(s.sub[0], SR_TO);
    assert_string_equal(s.names[0], "Staff;");
    assert_string_equal(s.jid[1], "b@h");
    assert_string_equal(s.jid[2], "x@h");
    assert_int_equal(s.sub[2], SR_FROM);
    memset(&s, 0, sizeof s);
    assert_int_equal(sr_model_contacts(m, "a@h", collect, &s), 0);
    assert_int_equal(s.n, 3); /* b (both), m (from), x (from: the lobby sees everyone) */
    assert_string_equal(s.jid[0], "b@h");
    assert_int_equal(s.sub[0], SR_TO | SR_FROM);
    assert_string_equal(s.jid[1], "m@h");
    assert_int_equal(s.sub[1], SR_FROM);
    assert_string_equal(s.names[1], "");
    assert_string_equal(s.jid[2], "x@h");
    /* every listed contact agrees with sr_model_item */
    const char *names[8];
    for (int i = 0; i < s.n; i++)
        assert_int_equal(item(m, "a@h", s.jid[i], names), s.sub[i]);
    sr_model_free(m);
}

static void test_token(void **state)
{
    sr_model *a = build(false), *b = build(true);
    assert_int_equal(strlen(sr_model_token(a)), 16);
    assert_string_equal(sr_model_token(a), sr_model_token(b)); /* the same content in another order */
    sr_model *c = sr_model_new();
    int g = sr_model_group(c, "staff", "Staff", NULL);
    assert_int_equal(sr_model_member(c, g, "a@h"), 0);
    const char *unknown;
    assert_int_equal(sr_model_finish(c, &unknown), 0);
    assert_string_not_equal(sr_model_token(a), sr_model_token(c));
    sr_model_free(a);
    sr_model_free(b);
    sr_model_free(c);
}

static void test_unknown_shown_group(void **state)
{
    sr_model *m = sr_model_new();
    const char *shows[] = { "nope", "g", NULL };
    int g = sr_model_group(m, "g", NULL, shows);
    assert_int_equal(sr_model_member(m, g, "a@h"), 0);
    assert_int_equal(sr_model_member(m, g, "b@h"), 0);
    const char *unknown = NULL;
    assert_int_equal(sr_model_finish(m, &unknown), 0);
    assert_string_equal(unknown, "nope");
    const char *names[8];
    assert_int_equal(item(m, "a@h", "b@h", names), SR_TO | SR_FROM);
    assert_string_equal(names[0], "g"); /* no name: the id */
    sr_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_who_sees_whom),
        cmocka_unit_test(test_contacts_of_an_account),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_unknown_shown_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
