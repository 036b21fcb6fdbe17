/* Unit tests of src/kernel/wire.c and connection.c: HMAC, message checks, building, files. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "kernel/connection.h"
#include "kernel/jscan.h"
#include "kernel/wire.h"
#include "testlib.h"

/* RFC 4231 test case 2, with the data split over the four parts. */
Test(wire, hmac_sha256_rfc4231_over_four_parts) {
  struct kbox_auth a;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_auth_init(&a, "hmac-sha256", "Jefe", &err), 0);
  const char *data = "what do ya want for nothing?";
  const void *part[4] = {data, data + 5, data + 12, data + 20};
  size_t len[4] = {5, 7, 8, strlen(data) - 20};
  char hex[129];
  kbox_auth_sign(&a, part, len, hex);
  cr_assert_str_eq(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  kbox_auth_free(&a);
}

/* RFC 4231 test case 6: a key longer than the block is hashed first (the pre-keyed fast path). */
Test(wire, hmac_sha256_rfc4231_long_key) {
  char key[132];
  memset(key, 0xaa, 131);
  key[131] = '\0';
  struct kbox_auth a;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_auth_init(&a, "hmac-sha256", key, &err), 0);
  const char *data = "Test Using Larger Than Block-Size Key - Hash Key First";
  const void *part[4] = {data, data + 10, "", data + 10};
  size_t len[4] = {10, 0, 0, strlen(data) - 10};
  char hex[129];
  kbox_auth_sign(&a, part, len, hex);
  cr_assert_str_eq(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  kbox_auth_sign(&a, part, len, hex); /* the pads are reused, not consumed */
  cr_assert_str_eq(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  kbox_auth_free(&a);
}

/* The other schemes keep going through EVP_MAC: RFC 4231 test case 2 with HMAC-SHA512. */
Test(wire, hmac_sha512_rfc4231) {
  struct kbox_auth a;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_auth_init(&a, "hmac-sha512", "Jefe", &err), 0);
  const char *data = "what do ya want for nothing?";
  const void *part[4] = {data, "", "", ""};
  size_t len[4] = {strlen(data), 0, 0, 0};
  char hex[129];
  kbox_auth_sign(&a, part, len, hex);
  cr_assert_str_eq(hex, "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
                        "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");
  kbox_auth_free(&a);
}

Test(wire, unknown_scheme_is_refused) {
  struct kbox_auth a;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_auth_init(&a, "rot13", "k", &err), -1);
  cr_assert(strstr(err->msg, "rot13") != NULL);
  kbox_error_free(&err);
}

/* A built message with an identity: passes the check, parses back. */
Test(wire, build_check_parse_roundtrip) {
  struct kbox_auth a;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_auth_init(&a, "hmac-sha256", "secret", &err), 0);
  struct kbox_frames f;
  kbox_frames_init(&f);
  json_t *content = json_pack("{s:s}", "code", "1+1");
  char id[33];
  kbox_wire_build(&a, &f, "client-7", 8, "sess", "execute_request", NULL, content, id);
  size_t delim = 99;
  cr_assert_null(kbox_wire_check(&a, &f, &delim));
  cr_assert_eq(delim, 1);
  struct kbox_wire_msg m;
  cr_assert_null(kbox_wire_parse(&f, delim, &m));
  cr_assert_str_eq(m.msg_type, "execute_request");
  cr_assert_str_eq(m.msg_id, id);
  cr_assert_str_eq(json_string_value(json_object_get(m.content, "code")), "1+1");
  cr_assert_str_eq(json_string_value(json_object_get(m.header, "session")), "sess");
  kbox_wire_msg_free(&m);
  json_decref(content);
  kbox_frames_free(&f);
  kbox_auth_free(&a);
}

/* Each defect gets its own reason. */
Test(wire, defects_are_rejected_with_reasons) {
  struct kbox_auth a, other;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_auth_init(&a, "hmac-sha256", "secret", &err), 0);
  cr_assert_eq(kbox_auth_init(&other, "hmac-sha256", "other", &err), 0);
  struct kbox_frames f;
  kbox_frames_init(&f);
  size_t d;
  kbox_frames_add(&f, "garbage", 7);
  cr_assert(strstr(kbox_wire_check(&a, &f, &d), "delimiter") != NULL);

  kbox_wire_build(&other, &f, "c", 1, "s", "kernel_info_request", NULL, NULL, NULL);
  cr_assert(strstr(kbox_wire_check(&a, &f, &d), "signature") != NULL);

  kbox_wire_build(&a, &f, "c", 1, "s", "kernel_info_request", NULL, NULL, NULL);
  kbox_frames_set(&f, 2, "", 0);
  cr_assert(strstr(kbox_wire_check(&a, &f, &d), "missing signature") != NULL);

  kbox_wire_build(&a, &f, "c", 1, "s", "kernel_info_request", NULL, NULL, NULL);
  zmq_msg_close(&f.v[--f.n]); /* drop content */
  cr_assert(strstr(kbox_wire_check(&a, &f, &d), "truncated") != NULL);

  kbox_wire_build(&a, &f, "c", 1, "s", "kernel_info_request", NULL, NULL, NULL);
  kbox_frames_set(&f, 6, "[1,2]", 5);
  cr_assert(strstr(kbox_wire_check(&a, &f, &d), "JSON object") != NULL);

  /* Correctly signed, but the header is not a Jupyter header. */
  kbox_wire_build(&a, &f, "c", 1, "s", "kernel_info_request", NULL, NULL, NULL);
  kbox_frames_set(&f, 3, "{\"x\": 1}", 8);
  kbox_wire_resign(&a, &f, 1);
  cr_assert(strstr(kbox_wire_check(&a, &f, &d), "msg_type") != NULL);

  /* Re-signing with the right key makes a message from another key valid. */
  kbox_wire_build(&other, &f, "c", 1, "s", "kernel_info_request", NULL, NULL, NULL);
  kbox_wire_resign(&a, &f, 1);
  cr_assert_null(kbox_wire_check(&a, &f, &d));
  kbox_frames_free(&f);
  kbox_auth_free(&a);
  kbox_auth_free(&other);
}

Test(wire, empty_key_means_unsigned) {
  struct kbox_auth a;
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_auth_init(&a, "hmac-sha256", "", &err), 0);
  struct kbox_frames f;
  kbox_frames_init(&f);
  kbox_wire_build(&a, &f, NULL, 0, "s", "status", NULL, NULL, NULL);
  cr_assert_eq(kbox_frame_size(&f, 1), 0);
  size_t d;
  cr_assert_null(kbox_wire_check(&a, &f, &d));
  cr_assert_eq(d, 0);
  kbox_frames_free(&f);
}

Test(connection, write_is_0600_exclusive_and_reads_back) {
  char *dir = kt_tmpdir();
  char path[512];
  snprintf(path, sizeof(path), "%s/c.json", dir);
  struct kbox_conn c, r;
  kbox_conn_init(&c);
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_conn_new_key(&c, &err), 0);
  for (int i = 0; i < KBOX_CH_N; i++) c.port[i] = 5000 + (unsigned)i;
  snprintf(c.transport, sizeof(c.transport), "ipc");
  snprintf(c.ip, sizeof(c.ip), "/tmp/x/kernel");
  cr_assert_eq(kbox_conn_write(path, &c, "k1", true, &err), 0);
  struct stat st;
  cr_assert_eq(stat(path, &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0600);
  cr_assert_eq(kbox_conn_write(path, &c, "k1", true, &err), -1, "an existing file must not be overwritten");
  kbox_error_free(&err);
  kbox_conn_init(&r);
  cr_assert_eq(kbox_conn_read(path, &r, &err), 0);
  cr_assert_str_eq(r.key, c.key);
  cr_assert_str_eq(r.transport, "ipc");
  cr_assert_eq(r.port[KBOX_CH_HB], 5004);
  char ep[300];
  kbox_conn_endpoint(&r, KBOX_CH_CONTROL, ep, sizeof(ep));
  cr_assert_str_eq(ep, "ipc:///tmp/x/kernel-5003");
  kt_rmrf(dir);
}

Test(connection, bad_fields_are_named) {
  struct kbox_conn c;
  kbox_conn_init(&c);
  kbox_error_t err = NULL;
  json_t *j = json_pack("{s:s}", "shell_port", "x");
  cr_assert_eq(kbox_conn_from_json(j, &c, "f.json", &err), -1);
  cr_assert(strstr(err->msg, "shell_port") != NULL);
  kbox_error_free(&err);
  json_decref(j);
  j = json_pack("{s:s}", "transport", "udp");
  cr_assert_eq(kbox_conn_from_json(j, &c, "f.json", &err), -1);
  cr_assert(strstr(err->msg, "udp") != NULL);
  kbox_error_free(&err);
  json_decref(j);
}

/* The allocation-free JSON check agrees with jansson on what is a valid object... */
Test(jscan, agrees_with_jansson) {
  static const char *cases[] = {
      "{}", " { } ", "{\"a\":1}", "{\"a\":-0.5e+10,\"b\":[1,2,{\"c\":null}],\"d\":true,\"e\":false}",
      "{\"s\":\"caf\xc3\xa9 \\u00e9 \\n \\\" \\\\ \\/\"}", "{\"e\":\"\xf0\x9f\x98\x80\"}", "[]", "1", "\"s\"", "",
      "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{\"a\":1 \"b\":2}", "{a:1}", "{'a':1}",
      "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":-}", "{\"a\":1e}", "{\"a\":+1}", "{\"a\":tru}",
      "{\"a\":nul}", "{\"a\":[1,]}", "{\"a\":[,1]}", "{\"a\":\"x\ty\"}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}",
      "{\"a\":\"\xc3\"}", "{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf5\x80\x80\x80\"}",
      "{\"a\":\"\xe0\x80\xaf\"}", "{} {}", "{}x", "{\"a\":1}}", "{\"a\":[}", "{\"a\":{\"b\":[[[]]]}}",
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    json_t *j = json_loads(cases[i], JSON_DECODE_ANY, NULL);
    bool want = json_is_object(j);
    json_decref(j);
    struct kbox_jspan none;
    cr_expect_eq(kbox_jscan_object(cases[i], strlen(cases[i]), NULL, 0, &none), want, "case %zu: %s", i, cases[i]);
  }
}

/* ...bounds nesting, and finds top-level string members only. */
Test(jscan, depth_limit_and_members) {
  char deep[2 * (KBOX_JSCAN_MAX_DEPTH + 1) + 16];
  size_t n = 0;
  deep[n++] = '{';
  deep[n++] = '"';
  deep[n++] = 'a';
  deep[n++] = '"';
  deep[n++] = ':';
  for (int i = 0; i < KBOX_JSCAN_MAX_DEPTH; i++) deep[n++] = '[';
  for (int i = 0; i < KBOX_JSCAN_MAX_DEPTH; i++) deep[n++] = ']';
  deep[n++] = '}';
  struct kbox_jspan none;
  cr_assert(!kbox_jscan_object(deep, n, NULL, 0, &none), "nesting deeper than the limit is refused");

  const char *h = "{\"x\":{\"msg_type\":\"inner\"},\"msg_type\":\"status\",\"msg_id\":\"a\\\"b\",\"n\":5,\"msg_type2\":\"z\"}";
  const char *const keys[] = {"msg_type", "msg_id", "n", "absent"};
  struct kbox_jspan v[4];
  cr_assert(kbox_jscan_object(h, strlen(h), keys, 4, v));
  cr_assert(kbox_jspan_eq(&v[0], "status"), "the top-level member, not the nested one");
  cr_assert(v[1].p != NULL && v[1].escaped && v[1].n == 4);
  cr_assert(!kbox_jspan_eq(&v[1], "a\"b"), "escaped values never compare equal");
  cr_assert_null(v[2].p, "a number is not a string member");
  cr_assert_null(v[3].p);
}
