/* The Enterprise Gateway response: built by kbox, decoded by an independent implementation (Python
   cryptography, the way EG decodes it); bad keys and unreachable addresses fail with clear messages. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "remote/eg.h"
#include "testlib.h"

static char standin[4096];

static void setup(void) {
  snprintf(standin, sizeof(standin), "%s/tests/remote/eg_standin.py", getenv("KBOX_SOURCE_ROOT"));
}

static json_t *sample_info(void) {
  return json_pack("{s:i,s:i,s:i,s:i,s:i,s:s,s:s,s:s,s:s,s:s,s:i,s:i,s:i}", "shell_port", 40001, "iopub_port", 40002,
                   "stdin_port", 40003, "control_port", 40004, "hb_port", 40005, "ip", "0.0.0.0", "key", "k3y-\xc3\xa9",
                   "transport", "tcp", "signature_scheme", "hmac-sha256", "kernel_id", "a1b2c3d4-0000-4000-8000-000000000001",
                   "comm_port", 40006, "pid", 7, "pgid", 7);
}

/* Generate a 1024-bit key with the stand-in; returns PUBLIC_KEY (static) and writes the PEM path. */
static const char *python_keygen(char *pem, size_t n) {
  char *dir = kt_tmpdir();
  snprintf(pem, n, "%s/private.pem", dir);
  free(dir);
  char *argv[] = {"/usr/bin/python3", standin, "keygen", pem, NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, NULL, -1, 60, &r), 0);
  cr_assert_eq(r.exit_code, 0, "keygen failed: %s", r.err);
  static char pub[2048];
  snprintf(pub, sizeof(pub), "%s", r.out);
  pub[strcspn(pub, "\n")] = '\0';
  kt_result_free(&r);
  return pub;
}

/* Decode payload with the stand-in (EG's algorithm) and return the JSON it printed. */
static json_t *python_decode(const char *pem, const char *payload) {
  char *dir = kt_tmpdir();
  char in[4096], cmd[16384];
  snprintf(in, sizeof(in), "%s/payload", dir);
  kt_write_file(in, payload);
  snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' decode '%s' < '%s'", standin, pem, in);
  char *argv[] = {"/bin/sh", "-c", cmd, NULL};
  struct kt_result r;
  cr_assert_eq(kt_run(argv, NULL, -1, 60, &r), 0);
  cr_assert_eq(r.exit_code, 0, "EG-style decoding failed: %s", r.err);
  json_error_t jerr;
  json_t *j = json_loads(r.out, 0, &jerr);
  cr_assert_not_null(j, "decoder printed no JSON: %s", r.out);
  kt_result_free(&r);
  kt_rmrf(dir);
  free(dir);
  return j;
}

TestSuite(eg, .init = setup);

Test(eg, payload_decodes_the_way_enterprise_gateway_decodes_it, .timeout = 120) {
  char pem[4096];
  const char *pub = python_keygen(pem, sizeof(pem));
  json_t *info = sample_info();
  kbox_error_t err = NULL;
  char *payload = NULL;
  cr_assert_eq(kbox_eg_build_payload(info, pub, &payload, &err), 0, "%s", err ? err->msg : "");
  json_t *back = python_decode(pem, payload);
  cr_assert(json_equal(back, info), "decoded %s", json_dumps(back, 0));
  /* a fresh AES key each time: two payloads of the same info differ */
  char *again = NULL;
  cr_assert_eq(kbox_eg_build_payload(info, pub, &again, &err), 0);
  cr_assert_str_neq(payload, again);
  free(payload);
  free(again);
  json_decref(back);
  json_decref(info);
}

Test(eg, public_key_checks_name_the_variable) {
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_eg_check_public_key("not base64 at all!", &err), -1);
  cr_assert(strstr(err->msg, "PUBLIC_KEY") != NULL, "%s", err->msg);
  kbox_error_free(&err);
  cr_assert_eq(kbox_eg_check_public_key("aGVsbG8gd29ybGQh", &err), -1); /* base64 of garbage */
  cr_assert(strstr(err->msg, "PUBLIC_KEY is not a public key") != NULL, "%s", err->msg);
  kbox_error_free(&err);
  /* an EC key is a public key, but not one EG could have sent */
  const char *ec = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZ5gFeXK0Fn6vQm1q8xKnXo1oTg3gQqHk0v3o4ZxwzqS6C9l3gK0j7m1B7pN0g0mH7Vf0n4gJ3x8s8q3mQ6r4cA==";
  int r = kbox_eg_check_public_key(ec, &err);
  cr_assert_eq(r, -1);
  cr_assert(strstr(err->msg, "PUBLIC_KEY") != NULL, "%s", err->msg);
  kbox_error_free(&err);
  json_t *info = sample_info();
  char *payload = NULL;
  cr_assert_eq(kbox_eg_build_payload(info, "AAAA", &payload, &err), -1);
  cr_assert_null(payload);
  kbox_error_free(&err);
  json_decref(info);
}

Test(eg, payload_requires_routing_fields, .timeout = 120) {
  char pem[4096];
  const char *pub = python_keygen(pem, sizeof(pem));
  json_t *info = sample_info();
  json_object_del(info, "kernel_id");
  kbox_error_t err = NULL;
  char *payload = NULL;
  cr_assert_eq(kbox_eg_build_payload(info, pub, &payload, &err), -1);
  cr_assert(strstr(err->msg, "kernel_id") != NULL, "%s", err->msg);
  kbox_error_free(&err);
  json_decref(info);
}

Test(eg, address_parsing) {
  kbox_error_t err = NULL;
  char *h = NULL, *p = NULL;
  cr_assert_eq(kbox_eg_split_address("10.0.0.5:8877", &h, &p, &err), 0);
  cr_assert_str_eq(h, "10.0.0.5");
  cr_assert_str_eq(p, "8877");
  free(h), free(p);
  cr_assert_eq(kbox_eg_split_address("[::1]:99", &h, &p, &err), 0);
  cr_assert_str_eq(h, "::1");
  free(h), free(p);
  cr_assert_eq(kbox_eg_split_address("gateway", &h, &p, &err), -1);
  cr_assert(strstr(err->msg, "RESPONSE_ADDRESS 'gateway'") != NULL, "%s", err->msg);
  kbox_error_free(&err);
  cr_assert_eq(kbox_eg_split_address("gw:http", &h, &p, &err), -1);
  kbox_error_free(&err);
  cr_assert_eq(kbox_eg_resolve("no-such-host.invalid:80", &err), -1);
  cr_assert(strstr(err->msg, "no-such-host.invalid") != NULL, "%s", err->msg);
  kbox_error_free(&err);
}

struct sink {
  int fd;
  char buf[8192];
  size_t len;
};

/* Accept one connection and read it to EOF (what EG does). */
static void *sink_main(void *arg) {
  struct sink *s = arg;
  int c = accept(s->fd, NULL, NULL);
  ssize_t n;
  while ((n = read(c, s->buf + s->len, sizeof(s->buf) - 1 - s->len)) > 0) s->len += (size_t)n;
  s->buf[s->len] = '\0';
  close(c);
  return NULL;
}

static int listen_loopback(unsigned *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  listen(fd, 1);
  socklen_t l = sizeof(a);
  getsockname(fd, (struct sockaddr *)&a, &l);
  *port = ntohs(a.sin_port);
  return fd;
}

Test(eg, send_writes_the_payload_whole_then_closes) {
  struct sink s = {0};
  unsigned port = 0;
  s.fd = listen_loopback(&port);
  pthread_t t;
  pthread_create(&t, NULL, sink_main, &s);
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
  char big[6000];
  memset(big, 'A', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_eg_send(addr, big, 5000, &err), 0, "%s", err ? err->msg : "");
  pthread_join(t, NULL);
  cr_assert_eq(s.len, strlen(big));
  cr_assert_str_eq(s.buf, big);
  close(s.fd);
}

Test(eg, unreachable_address_names_it) {
  unsigned port = 0;
  int fd = listen_loopback(&port);
  close(fd); /* nobody listens there now */
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_eg_send(addr, "x", 2000, &err), -1);
  cr_assert(strstr(err->msg, addr) != NULL && strstr(err->msg, "RESPONSE_ADDRESS") != NULL, "%s", err->msg);
  cr_assert(strstr(err->msg, "refused") != NULL, "%s", err->msg);
  kbox_error_free(&err);
}

Test(eg, base64_round_trip) {
  const unsigned char data[] = {0, 1, 2, 250, 251, 252, 253};
  for (size_t n = 0; n <= sizeof(data); n++) {
    char *e = kbox_base64_encode(data, n);
    size_t len = 0;
    unsigned char *d = n ? kbox_base64_decode(e, &len) : NULL;
    if (n) {
      cr_assert_not_null(d);
      cr_assert_eq(len, n);
      cr_assert_eq(memcmp(d, data, n), 0);
    }
    free(e);
    free(d);
  }
  size_t len = 0;
  cr_assert_null(kbox_base64_decode("abc", &len));
}

/* A start failure reaches EG as a response it can decode, routed by kernel_id, whose comm_port is
   not an integer (EG's int() of it raises at once and logs it) and carries the reason. */
Test(eg, failure_report_decodes_and_breaks_the_comm_port_on_purpose, .timeout = 120) {
  char pem[4096];
  const char *pub = python_keygen(pem, sizeof(pem));
  struct sink s = {0};
  unsigned port = 0;
  s.fd = listen_loopback(&port);
  pthread_t t;
  pthread_create(&t, NULL, sink_main, &s);
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
  kbox_error_t err = NULL;
  cr_assert_eq(kbox_eg_send_failure(addr, pub, "kid-1", "mounting a fresh /proc: refused", &err), 0, "%s",
               err ? err->msg : "");
  pthread_join(t, NULL);
  close(s.fd);
  json_t *j = python_decode(pem, s.buf);
  cr_assert_str_eq(json_string_value(json_object_get(j, "kernel_id")), "kid-1");
  cr_assert_str_eq(json_string_value(json_object_get(j, "kbox_error")), "mounting a fresh /proc: refused");
  json_t *cp = json_object_get(j, "comm_port");
  cr_assert(json_is_string(cp), "comm_port must not be a number");
  cr_assert_str_eq(json_string_value(cp), "kbox could not start the kernel: mounting a fresh /proc: refused");
  cr_assert_null(json_object_get(j, "shell_port"), "a failure report must carry no ports");
  json_decref(j);
}
