/* Micro-benchmark of the broker's per-message cost (not a test): the real broker (kbox_broker_*)
   between an in-process client and an in-process fake kernel over ipc, in one thread, so the
   broker's share can be timed by itself. One round = the client's execute_request, the kernel's
   busy status, execute_reply, idle status (the shape of an execute round trip); then iopub
   throughput of large stream messages. Prints broker CPU (this thread, kbox_broker_service only)
   per round and per message, and wall time per round (one thread plays all three parts).
     ninja -C build && cc -O2 -D_GNU_SOURCE -Isrc -Ibuild tools/bench_broker.c build/src/libkboxkernel.a build/src/libkboxcore.a \
        $(pkg-config --libs libzmq jansson libcrypto libseccomp libcap) -lm -o /tmp/bench_broker && /tmp/bench_broker 20000
   For an instruction profile: valgrind --tool=callgrind /tmp/bench_broker 2000; callgrind_annotate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernel/broker.h"

static double cpu_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double wall_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double broker_cpu; /* seconds spent in kbox_broker_service */

/* One turn of the supervisor's loop: sleep in poll until a broker fd fires (or the broker said
   it has more), then service. */
static bool more = true;
static void pump(struct kbox_broker *b) {
  struct pollfd pfd[KBOX_BROKER_NPOLL];
  kbox_broker_pollfds(b, pfd);
  poll(pfd, KBOX_BROKER_NPOLL, more ? 0 : 2);
  double t = cpu_s();
  more = kbox_broker_service(b, pfd, kbox_now_ms());
  broker_cpu += cpu_s() - t;
}

/* Receive one message on s, letting the broker run until it arrives. */
static void recv_via(struct kbox_broker *b, void *s, struct kbox_frames *f) {
  bool big = false;
  for (;;) {
    if (kbox_frames_recv(s, f, 1u << 30, 4096, &big) == 1) return;
    pump(b);
  }
}

/* From the fake kernel: msg_type with the request's header as parent; on shell the request's
   identity frames in front (as ipykernel echoes them), on iopub a topic. */
static void kernel_send(struct kbox_auth *ka, void *s, const struct kbox_frames *req, size_t delim, const char *type,
                        json_t *content, bool iopub) {
  struct kbox_frames msg, out;
  kbox_frames_init(&msg);
  kbox_frames_init(&out);
  json_t *parent = json_loadb(kbox_frame_data(req, delim + 2), kbox_frame_size(req, delim + 2), 0, NULL);
  kbox_wire_build(ka, &msg, NULL, 0, "kernel-session", type, parent, content, NULL);
  json_decref(parent);
  if (iopub) kbox_frames_add(&out, "kernel.stream", 13);
  else
    for (size_t i = 0; i < delim; i++) kbox_frames_add(&out, kbox_frame_data(req, i), kbox_frame_size(req, i));
  for (size_t i = 0; i < msg.n; i++) kbox_frames_add(&out, kbox_frame_data(&msg, i), kbox_frame_size(&msg, i));
  kbox_frames_send(s, &out);
  kbox_frames_free(&out);
  kbox_frames_free(&msg);
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 10000;
  char dir[] = "/tmp/kbox-bench-XXXXXX";
  if (mkdtemp(dir) == NULL) return 1;
  struct kbox_conn host, kern;
  kbox_conn_init(&host);
  kbox_conn_init(&kern);
  snprintf(kern.transport, sizeof(kern.transport), "ipc");
  snprintf(kern.ip, sizeof(kern.ip), "%s/kernel", dir);
  for (int ch = 0; ch < KBOX_CH_N; ch++) kern.port[ch] = (unsigned)ch + 1;
  kbox_error_t err = NULL;
  if (kbox_conn_new_key(&host, &err) < 0 || kbox_conn_new_key(&kern, &err) < 0) return 1;
  /* the fake kernel: ROUTER shell, PUB iopub, bound before the broker connects */
  void *kctx = zmq_ctx_new();
  void *kshell = zmq_socket(kctx, ZMQ_ROUTER), *kiopub = zmq_socket(kctx, ZMQ_PUB);
  char ep[512];
  kbox_conn_endpoint(&kern, KBOX_CH_SHELL, ep, sizeof(ep));
  zmq_bind(kshell, ep);
  kbox_conn_endpoint(&kern, KBOX_CH_IOPUB, ep, sizeof(ep));
  zmq_bind(kiopub, ep);
  struct kbox_broker b;
  if (kbox_broker_open(&b, &host, &kern, 0, 0, 64u << 20, &err) < 0) {
    fprintf(stderr, "%s\n", err->msg);
    return 1;
  }
  b.ready = true;
  void *cshell = zmq_socket(kctx, ZMQ_DEALER), *ciopub = zmq_socket(kctx, ZMQ_SUB);
  kbox_conn_endpoint(&host, KBOX_CH_SHELL, ep, sizeof(ep));
  zmq_connect(cshell, ep);
  kbox_conn_endpoint(&host, KBOX_CH_IOPUB, ep, sizeof(ep));
  zmq_setsockopt(ciopub, ZMQ_SUBSCRIBE, "", 0);
  zmq_connect(ciopub, ep);
  struct kbox_auth ca, ka;
  kbox_auth_init(&ca, host.scheme, host.key, &err);
  kbox_auth_init(&ka, kern.scheme, kern.key, &err);
  struct kbox_frames req, got, f;
  kbox_frames_init(&req);
  kbox_frames_init(&got);
  kbox_frames_init(&f);
  json_t *code = json_pack("{s:s, s:b, s:b, s:{}, s:b}", "code", "1", "silent", 0, "store_history", 1, "user_expressions",
                           "allow_stdin", 0);
  json_t *busy = json_pack("{s:s}", "execution_state", "busy"), *idle = json_pack("{s:s}", "execution_state", "idle");
  json_t *ok = json_pack("{s:s, s:i}", "status", "ok", "execution_count", 1);
  usleep(300000); /* connections up; the SUB subscription reaches the broker's XPUB */
  pump(&b);
  for (int warm = 0; warm < 2; warm++) {
    int n = warm == 0 ? rounds / 10 + 1 : rounds;
    broker_cpu = 0;
    double w0 = wall_s();
    for (int i = 0; i < n; i++) {
      kbox_wire_build(&ca, &req, NULL, 0, "client-session", "execute_request", NULL, code, NULL);
      kbox_frames_send(cshell, &req);
      recv_via(&b, kshell, &got); /* [ident(s)..., delim, sig, header, parent, metadata, content] */
      size_t delim = 0;
      while (delim < got.n && !(kbox_frame_size(&got, delim) == 9 && memcmp(kbox_frame_data(&got, delim), "<IDS|MSG>", 9) == 0)) delim++;
      kernel_send(&ka, kiopub, &got, delim, "status", busy, true);
      kernel_send(&ka, kshell, &got, delim, "execute_reply", ok, false);
      kernel_send(&ka, kiopub, &got, delim, "status", idle, true);
      recv_via(&b, ciopub, &f);
      recv_via(&b, cshell, &f);
      recv_via(&b, ciopub, &f);
    }
    double wall = wall_s() - w0;
    if (warm)
      printf("execute round (4 messages through the broker): broker CPU %.2f us/round (%.2f us/message), wall %.1f us/round, %d rounds\n",
             broker_cpu / n * 1e6, broker_cpu / n / 4 * 1e6, wall / n * 1e6, n);
  }
  /* iopub throughput: 1 MB stream messages */
  char *text = malloc(1 << 20);
  memset(text, 'x', 1 << 20);
  text[(1 << 20) - 1] = '\0';
  json_t *stream = json_pack("{s:s, s:s}", "name", "stdout", "text", text);
  int big = rounds / 100 + 20;
  broker_cpu = 0;
  double w0 = wall_s();
  for (int i = 0; i < big; i++) {
    kernel_send(&ka, kiopub, &got, 2, "stream", stream, true);
    recv_via(&b, ciopub, &f);
  }
  double wall = wall_s() - w0;
  printf("iopub 1 MB stream messages: broker CPU %.0f us/message (%.0f MB/s of broker CPU), wall %.0f us/message, %d messages\n",
         broker_cpu / big * 1e6, big / broker_cpu, wall / big * 1e6, big);
  kbox_broker_close(&b, 0);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : 1;
}
