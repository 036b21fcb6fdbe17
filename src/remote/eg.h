/* Enterprise Gateway's launch response: the encrypted connection info sent to RESPONSE_ADDRESS. */
#ifndef KBOX_REMOTE_EG_H
#define KBOX_REMOTE_EG_H

#include <jansson.h>
#include <stddef.h>
#include "util/error.h"

/* Check that PUBLIC_KEY (base64 DER SubjectPublicKeyInfo, or PEM) holds an RSA public key. */
int kbox_eg_check_public_key(const char *public_key, kbox_error_t *err);

/* Build the response payload from the connection info (which must already carry kernel_id,
   comm_port, pid and pgid): AES-128-ECB/PKCS#7 under a random key, that key wrapped with RSA
   PKCS#1 v1.5, both base64 in {"version":1,"key","conn_info"}, the whole JSON base64 again. */
int kbox_eg_build_payload(json_t *conn_info, const char *public_key, char **out, kbox_error_t *err);

/* Split "host:port" (or "[v6]:port") into its parts (caller frees). */
int kbox_eg_split_address(const char *address, char **host, char **port, kbox_error_t *err);

/* Resolve the response address without connecting (fail fast on a bad host or port). */
int kbox_eg_resolve(const char *address, kbox_error_t *err);

/* Connect to the response address (within timeout_ms), write the payload whole, close. */
int kbox_eg_send(const char *address, const char *payload, int timeout_ms, kbox_error_t *err);

/* EG's launch protocol has no failure message: a launcher that cannot start its kernel either
   exits (which EG notices only when the container's "exited" state outlives its auto-removal) or
   lets EG wait its whole launch timeout. kbox instead sends a response for the kernel id whose
   comm_port is the failure text: EG's int() of it raises at once, EG logs "Exception occurred
   waiting for connection file response for KernelId ...: ... '<the text>'", answers the REST
   request with 500 and that reason, and removes the container. kbox_error repeats the reason. */
json_t *kbox_eg_failure_info(const char *kernel_id, const char *reason);
/* Encrypt and send that failure response to the response address. */
int kbox_eg_send_failure(const char *address, const char *public_key, const char *kernel_id, const char *reason,
                         kbox_error_t *err);

/* Base64 without line breaks (caller frees). Exported for the tests. */
char *kbox_base64_encode(const unsigned char *data, size_t len);
/* Decode base64, ignoring whitespace; returns a malloc'd buffer and its length, or NULL. */
unsigned char *kbox_base64_decode(const char *text, size_t *len);

#endif
