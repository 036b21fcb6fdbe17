/* --audit FILE: one JSON Lines record per event of a kernel (start, each execute_request and its
   outcome, network decisions, limit events, end with the verdict). The file is opened O_APPEND on
   the host side before the sandbox starts; each record is one write(2), so kernels can share a file
   without torn lines; a failed write is counted and logged, never fatal. Thread-safe (the proxy
   thread records network decisions). */
#ifndef KBOX_KERNEL_AUDIT_H
#define KBOX_KERNEL_AUDIT_H

#include <jansson.h>
#include <stdbool.h>

#include "kernel/connection.h"
#include "kernel/wire.h"
#include "spec/spec.h"
#include "util/error.h"

#define KBOX_AUDIT_ENV "KBOX_AUDIT"
#define KBOX_AUDIT_CODE_CAP 65536 /* bytes of code kept per execute_request (the hash covers all of it) */
#define KBOX_AUDIT_TEXT_CAP 4096  /* ename/evalue */

struct kbox_audit;

/* Open (create 0600) path for appending; an unwritable file is an error now, not later. */
int kbox_audit_open(struct kbox_audit **out, const char *path, const char *id, kbox_error_t *err);
/* Refuse an audit path the sandbox could see or change (inside --workdir or a --bind source). */
int kbox_audit_check_hidden(const struct kbox_spec *spec, kbox_error_t *err);
/* Hide the (opened) log inside the sandbox when a rootfs layer shows it (e.g. --rootfs /): a
   read-only, nodev /dev/null is bound over it there. */
void kbox_audit_mask(struct kbox_spec *spec);
/* Write one record {time, id, event, ...fields}; fields is consumed (may be NULL). */
void kbox_audit_record(struct kbox_audit *a, const char *event, json_t *fields);
/* The kernel_start record: image, profile, limits, network, how it was started. */
void kbox_audit_start(struct kbox_audit *a, const struct kbox_spec *spec, const char *how, int pid);
/* At the end: outcomes of requests never answered, limit events from the verdict, kernel_end. */
void kbox_audit_end(struct kbox_audit *a, json_t *verdict);
void kbox_audit_close(struct kbox_audit *a);
/* {"path", "records", "dropped"} for --report. */
json_t *kbox_audit_report(const struct kbox_audit *a);

/* Broker hooks (main thread): a checked client message, a kernel reply, an iopub message. */
void kbox_audit_on_client(struct kbox_audit *a, enum kbox_channel ch, const struct kbox_frames *f, size_t delim, long long now);
void kbox_audit_on_kernel(struct kbox_audit *a, enum kbox_channel ch, const struct kbox_frames *f, size_t delim, long long now);
void kbox_audit_on_iopub(struct kbox_audit *a, const struct kbox_frames *f, size_t delim);
/* The running request was interrupted (SIGINT forwarded) / hit --exec-timeout. */
void kbox_audit_interrupted(struct kbox_audit *a);
void kbox_audit_timed_out(struct kbox_audit *a);

#endif
