#include "remote/eg.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/cleanup.h"

char *kbox_base64_encode(const unsigned char *data, size_t len) {
  char *out = xmalloc(4 * ((len + 2) / 3) + 1);
  EVP_EncodeBlock((unsigned char *)out, data, (int)len);
  return out;
}

unsigned char *kbox_base64_decode(const char *text, size_t *len) {
  size_t n = strlen(text);
  cleanup_free char *clean = xmalloc(n + 1);
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (!isspace((unsigned char)text[i])) clean[m++] = text[i];
  clean[m] = '\0';
  if (m == 0 || m % 4 != 0) return NULL;
  unsigned char *out = xmalloc(m / 4 * 3 + 1);
  int r = EVP_DecodeBlock(out, (const unsigned char *)clean, (int)m);
  if (r < 0) {
    free(out);
    return NULL;
  }
  size_t pad = (clean[m - 1] == '=') + (clean[m - 2] == '=');
  *len = (size_t)r - pad;
  return out;
}

/* Text of the last OpenSSL error, for messages. */
static const char *ssl_reason(void) {
  static char buf[256];
  unsigned long e = ERR_get_error();
  if (e == 0) return "no detail from OpenSSL";
  ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

static void pkey_freep(EVP_PKEY **k) {
  if (*k != NULL) EVP_PKEY_free(*k);
}

/* Parse PUBLIC_KEY: base64 DER SubjectPublicKeyInfo (what EG sends) or a PEM block. */
static EVP_PKEY *load_public_key(const char *text, kbox_error_t *err) {
  EVP_PKEY *key = NULL;
  if (strstr(text, "-----BEGIN") != NULL) {
    BIO *bio = BIO_new_mem_buf(text, -1);
    if (bio != NULL) key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
  } else {
    size_t len = 0;
    cleanup_free unsigned char *der = kbox_base64_decode(text, &len);
    if (der == NULL) {
      kbox_error_make(err, 0, "PUBLIC_KEY is not valid base64 (expected the base64 DER public key Enterprise Gateway sets)");
      return NULL;
    }
    const unsigned char *p = der;
    key = d2i_PUBKEY(NULL, &p, (long)len);
  }
  if (key == NULL) {
    kbox_error_make(err, 0, "PUBLIC_KEY is not a public key (%s)", ssl_reason());
    return NULL;
  }
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
    EVP_PKEY_free(key);
    kbox_error_make(err, 0, "PUBLIC_KEY is not an RSA key (Enterprise Gateway uses RSA)");
    return NULL;
  }
  return key;
}

int kbox_eg_check_public_key(const char *public_key, kbox_error_t *err) {
  EVP_PKEY *key = load_public_key(public_key, err);
  if (key == NULL) return -1;
  EVP_PKEY_free(key);
  return 0;
}

/* AES-128-ECB with PKCS#7 padding (OpenSSL's default padding for block ciphers). */
static int aes_ecb_encrypt(const unsigned char key[16], const char *plain, unsigned char **out, int *out_len,
                           kbox_error_t *err) {
  int n = (int)strlen(plain);
  unsigned char *buf = xmalloc((size_t)n + 16);
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int l1 = 0, l2 = 0;
  int ok = buf != NULL && ctx != NULL && EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), NULL, key, NULL) == 1 &&
           EVP_EncryptUpdate(ctx, buf, &l1, (const unsigned char *)plain, n) == 1 &&
           EVP_EncryptFinal_ex(ctx, buf + l1, &l2) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) {
    free(buf);
    return kbox_error_make(err, 0, "AES-128-ECB encryption failed (%s)", ssl_reason());
  }
  *out = buf;
  *out_len = l1 + l2;
  return 0;
}

/* RSA PKCS#1 v1.5 encryption of a short secret with the gateway's public key. */
static int rsa_wrap(EVP_PKEY *key, const unsigned char *secret, size_t n, unsigned char **out, size_t *out_len,
                    kbox_error_t *err) {
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
  size_t len = 0;
  unsigned char *buf = NULL;
  int ok = ctx != NULL && EVP_PKEY_encrypt_init(ctx) == 1 &&
           EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
           EVP_PKEY_encrypt(ctx, NULL, &len, secret, n) == 1 && (buf = xmalloc(len)) != NULL &&
           EVP_PKEY_encrypt(ctx, buf, &len, secret, n) == 1;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) {
    free(buf);
    return kbox_error_make(err, 0, "RSA encryption with PUBLIC_KEY failed (%s)", ssl_reason());
  }
  *out = buf;
  *out_len = len;
  return 0;
}

/* The encryption and envelope of any response (the connection info or a failure report). */
static int seal(json_t *conn_info, const char *public_key, char **out, kbox_error_t *err) {
  __attribute__((cleanup(pkey_freep))) EVP_PKEY *key = load_public_key(public_key, err);
  if (key == NULL) return -1;
  unsigned char aes_key[16];
  if (RAND_bytes(aes_key, sizeof(aes_key)) != 1)
    return kbox_error_make(err, 0, "no random bytes for the AES key (%s)", ssl_reason());
  cleanup_free char *plain = json_dumps(conn_info, JSON_COMPACT);
  cleanup_free unsigned char *cipher = NULL;
  int cipher_len = 0;
  cleanup_free unsigned char *wrapped = NULL;
  size_t wrapped_len = 0;
  if (plain == NULL) return kbox_error_make(err, 0, "cannot serialize the connection info");
  if (aes_ecb_encrypt(aes_key, plain, &cipher, &cipher_len, err) < 0) return -1;
  if (rsa_wrap(key, aes_key, sizeof(aes_key), &wrapped, &wrapped_len, err) < 0) return -1;
  OPENSSL_cleanse(aes_key, sizeof(aes_key));
  cleanup_free char *conn_b64 = kbox_base64_encode(cipher, (size_t)cipher_len);
  cleanup_free char *key_b64 = kbox_base64_encode(wrapped, wrapped_len);
  json_t *env = json_pack("{s:i, s:s, s:s}", "version", 1, "key", key_b64, "conn_info", conn_b64);
  cleanup_free char *env_text = env ? json_dumps(env, JSON_COMPACT) : NULL;
  json_decref(env);
  if (env_text == NULL) return kbox_error_make(err, 0, "cannot serialize the response envelope");
  *out = kbox_base64_encode((const unsigned char *)env_text, strlen(env_text));
  return *out == NULL ? kbox_error_make(err, ENOMEM, "encoding the response") : 0;
}

int kbox_eg_build_payload(json_t *conn_info, const char *public_key, char **out, kbox_error_t *err) {
  static const char *const required[] = {"kernel_id", "comm_port", "pid", "pgid", "key", "shell_port", NULL};
  for (int i = 0; required[i] != NULL; i++)
    if (json_object_get(conn_info, required[i]) == NULL)
      return kbox_error_make(err, 0, "internal: the connection info lacks '%s'", required[i]);
  return seal(conn_info, public_key, out, err);
}

int kbox_eg_split_address(const char *address, char **host, char **port, kbox_error_t *err) {
  const char *colon = strrchr(address, ':');
  if (colon == NULL || colon == address || colon[1] == '\0')
    return kbox_error_make(err, 0, "RESPONSE_ADDRESS '%s' is not HOST:PORT", address);
  const char *h = address;
  size_t hlen = (size_t)(colon - address);
  if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
    h++;
    hlen -= 2;
  }
  for (const char *p = colon + 1; *p; p++)
    if (!isdigit((unsigned char)*p)) return kbox_error_make(err, 0, "RESPONSE_ADDRESS '%s': port is not a number", address);
  *host = xstrndup(h, hlen);
  *port = xstrdup(colon + 1);
  return 0;
}

/* getaddrinfo on the response address, with a message naming it. */
static int resolve(const char *address, struct addrinfo **res, kbox_error_t *err) {
  cleanup_free char *host = NULL;
  cleanup_free char *port = NULL;
  if (kbox_eg_split_address(address, &host, &port, err) < 0) return -1;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  int r = getaddrinfo(host, port, &hints, res);
  if (r != 0) return kbox_error_make(err, 0, "RESPONSE_ADDRESS %s: cannot resolve '%s': %s", address, host, gai_strerror(r));
  return 0;
}

int kbox_eg_resolve(const char *address, kbox_error_t *err) {
  struct addrinfo *res = NULL;
  if (resolve(address, &res, err) < 0) return -1;
  freeaddrinfo(res);
  return 0;
}

/* Non-blocking connect bounded by timeout_ms; returns a connected blocking fd. */
static int connect_within(const struct addrinfo *ai, int timeout_ms) {
  cleanup_close int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
    if (errno != EINPROGRESS) return -1;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int r = poll(&p, 1, timeout_ms);
    if (r == 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) return -1;
    if (soerr != 0) {
      errno = soerr;
      return -1;
    }
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return steal_fd(fd);
}

int kbox_eg_send(const char *address, const char *payload, int timeout_ms, kbox_error_t *err) {
  struct addrinfo *res = NULL;
  if (resolve(address, &res, err) < 0) return -1;
  int fd = -1, e = 0;
  for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
    fd = connect_within(ai, timeout_ms);
    if (fd < 0) e = errno;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    kbox_error_make(err, e, "cannot reach the gateway at RESPONSE_ADDRESS %s", address);
    return kbox_error_hint(err, "check RESPONSE_ADDRESS and that the gateway is reachable from the pod");
  }
  cleanup_close int sock = fd;
  struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
  setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  size_t len = strlen(payload), off = 0;
  while (off < len) {
    ssize_t w = send(sock, payload + off, len - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return kbox_error_make(err, errno, "sending the connection info to RESPONSE_ADDRESS %s", address);
    off += (size_t)w;
  }
  shutdown(sock, SHUT_WR);
  return 0;
}

json_t *kbox_eg_failure_info(const char *kernel_id, const char *reason) {
  char text[1200];
  snprintf(text, sizeof(text), "kbox could not start the kernel: %s", reason);
  return json_pack("{s:s, s:s, s:s}", "kernel_id", kernel_id, "comm_port", text, "kbox_error", reason);
}

int kbox_eg_send_failure(const char *address, const char *public_key, const char *kernel_id, const char *reason,
                         kbox_error_t *err) {
  json_t *info = kbox_eg_failure_info(kernel_id, reason);
  cleanup_free char *payload = NULL;
  int r = seal(info, public_key, &payload, err);
  json_decref(info);
  if (r < 0) return -1;
  return kbox_eg_send(address, payload, 5000, err);
}
