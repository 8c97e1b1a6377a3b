/* Unit tests for auth.c: strict base64, the PLAIN / LOGIN exchanges and
 * cancellation (failures per network: t/unit/shmcount.c). */
#include <stdio.h>
#include <string.h>

#include "proto/auth.h"
#include "tap.h"

static void test_base64(void)
{
    char out[64];
    is_int(auth_base64_decode("", 0, out), 0, "b64: empty");
    is_int(auth_base64_decode("YWJj", 4, out), 3, "b64: abc");
    is_str(out, "abc", "b64: abc text");
    is_int(auth_base64_decode("YWI=", 4, out), 2, "b64: one pad");
    is_int(auth_base64_decode("YQ==", 4, out), 1, "b64: two pads");
    is_int(auth_base64_decode("YQ=", 3, out), -1, "b64: bad length");
    is_int(auth_base64_decode("Y===", 4, out), -1, "b64: three pads");
    is_int(auth_base64_decode("YQ==YWJj", 8, out), -1, "b64: data after padding");
    is_int(auth_base64_decode("YW J", 4, out), -1, "b64: blank");
    is_int(auth_base64_decode("YW*j", 4, out), -1, "b64: bad byte");
}

static void test_plain(void)
{
    struct auth_sasl a = { 0 };
    struct auth_step st;
    /* "\0alice\0pw" */
    auth_start(&a, "PLAIN AGFsaWNlAHB3", &st);
    is_int(st.next, AUTH_COMPLETE, "PLAIN IR: complete");
    is_str(a.creds.user, "alice", "PLAIN IR: user");
    is_str(a.creds.password, "pw", "PLAIN IR: password");
    is_str(a.creds.mechanism, "PLAIN", "PLAIN IR: mechanism");
    auth_start(&a, "plain", &st);
    ok(st.next == AUTH_CHALLENGE && !strcmp(st.challenge, ""), "PLAIN: empty challenge");
    auth_continue(&a, "YWxpY2UAYWxpY2UAcHc=", &st);   /* alice\0alice\0pw */
    ok(st.next == AUTH_COMPLETE && !strcmp(a.user, "alice"), "PLAIN: authzid = authcid ok");
    auth_start(&a, "PLAIN Ym9iAGFsaWNlAHB3", &st);    /* bob\0alice\0pw */
    is_int(st.code, 535, "PLAIN: other authzid refused");
    auth_start(&a, "PLAIN YWxpY2U=", &st);
    is_int(st.code, 501, "PLAIN: no NULs");
    auth_start(&a, "PLAIN =", &st);
    is_int(st.code, 501, "PLAIN: empty initial response is malformed");
    auth_start(&a, "PLAIN", &st);
    auth_continue(&a, "*", &st);
    ok(st.next == AUTH_FAIL && st.code == 501 && !strcmp(st.enh, "5.0.0"), "PLAIN: cancel");
    auth_start(&a, "PLAIN a b", &st);
    is_int(st.code, 501, "two arguments: syntax");
    auth_start(&a, "XOAUTH2 abc", &st);
    is_int(st.code, 504, "unknown mechanism");
    auth_start(&a, "AVERYLONGMECHANISMNAMETHATISWAYTOOLONGFORANYTHING", &st);
    is_int(st.code, 504, "over-long mechanism");
    auth_clear(&a);
}

static void test_login(void)
{
    struct auth_sasl a = { 0 };
    struct auth_step st;
    auth_start(&a, "LOGIN", &st);
    is_str(st.challenge, "VXNlcm5hbWU6", "LOGIN: Username:");
    auth_continue(&a, "YWxpY2U=", &st);
    is_str(st.challenge, "UGFzc3dvcmQ6", "LOGIN: Password:");
    auth_continue(&a, "cHc=", &st);
    ok(st.next == AUTH_COMPLETE && !strcmp(a.creds.password, "pw"), "LOGIN: complete");
    auth_start(&a, "LOGIN YWxpY2U=", &st);
    is_str(st.challenge, "UGFzc3dvcmQ6", "LOGIN IR: straight to the password");
    auth_continue(&a, "cA!=", &st);
    ok(st.next == AUTH_FAIL && st.code == 501 && !strcmp(st.enh, "5.5.2"), "LOGIN: bad base64");
    auth_start(&a, "LOGIN YQBi", &st);     /* "a\0b" */
    is_int(st.code, 501, "LOGIN: NUL in user name");
    auth_clear(&a);
}

int main(void)
{
    test_base64();
    test_plain();
    test_login();
    return done_testing();
}
