// The system's OpenSSL 3 for Swift. Function-like macros and SSL_OP_* constants cannot be
// imported; the static inline functions and static constants below give them to Swift.
// Only the TLS module imports this; everything else uses its Swift API.
#ifndef LIFELINE_COPENSSL_SHIM_H
#define LIFELINE_COPENSSL_SHIM_H

#include <stdint.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/tls1.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

// MARK: - SSL_OP_* (SSL_OP_BIT casts to uint64_t, which the importer does not evaluate)

static const uint64_t lifeline_SSL_OP_ALL = SSL_OP_ALL;
static const uint64_t lifeline_SSL_OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION;
static const uint64_t lifeline_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;
static const uint64_t lifeline_SSL_OP_CIPHER_SERVER_PREFERENCE = SSL_OP_CIPHER_SERVER_PREFERENCE;
static const uint64_t lifeline_SSL_OP_NO_TICKET = SSL_OP_NO_TICKET;
static const uint64_t lifeline_SSL_OP_NO_SSLv3 = SSL_OP_NO_SSLv3;
static const uint64_t lifeline_SSL_OP_NO_TLSv1 = SSL_OP_NO_TLSv1;
static const uint64_t lifeline_SSL_OP_NO_TLSv1_1 = SSL_OP_NO_TLSv1_1;

// MARK: - SSL_CTX controls (macros over SSL_CTX_ctrl / SSL_CTX_callback_ctrl)

static inline long lifeline_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}

static inline long lifeline_SSL_CTX_get_mode(SSL_CTX *ctx) {
    return SSL_CTX_get_mode(ctx);
}

static inline int lifeline_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

static inline long lifeline_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}

static inline long lifeline_SSL_CTX_set_dh_auto(SSL_CTX *ctx, long onoff) {
    return SSL_CTX_set_dh_auto(ctx, onoff);
}

static inline int lifeline_SSL_CTX_set1_sigalgs_list(SSL_CTX *ctx, const char *list) {
    return (int)SSL_CTX_set1_sigalgs_list(ctx, list);
}

static inline int lifeline_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list) {
    return (int)SSL_CTX_set1_groups_list(ctx, list);
}

typedef int (*lifeline_servername_callback)(SSL *ssl, int *alert, void *arg);

static inline long lifeline_SSL_CTX_set_tlsext_servername_callback(SSL_CTX *ctx, lifeline_servername_callback cb) {
    return SSL_CTX_set_tlsext_servername_callback(ctx, cb);
}

static inline long lifeline_SSL_CTX_set_tlsext_servername_arg(SSL_CTX *ctx, void *arg) {
    return SSL_CTX_set_tlsext_servername_arg(ctx, arg);
}

// MARK: - SSL controls

static inline long lifeline_SSL_get_mode(SSL *ssl) {
    return SSL_get_mode(ssl);
}

/// The groups the peer supports (server side: from its ClientHello); NULL `groups` counts them.
static inline int lifeline_SSL_get1_groups(SSL *ssl, int *groups) {
    return (int)SSL_get1_groups(ssl, groups);
}

static inline int lifeline_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

/// SSL_get_peer_certificate is a macro for SSL_get1_peer_certificate in 3.0: the caller owns
/// the returned reference and must X509_free it.
static inline X509 *lifeline_SSL_get_peer_certificate(const SSL *ssl) {
    return SSL_get1_peer_certificate(ssl);
}

// MARK: - BIO flags

static inline void lifeline_BIO_set_retry_read(BIO *bio) {
    BIO_set_retry_read(bio);
}

static inline void lifeline_BIO_clear_retry_flags(BIO *bio) {
    BIO_clear_retry_flags(bio);
}

// MARK: - Memory and errors

static inline void lifeline_OPENSSL_free(void *pointer) {
    OPENSSL_free(pointer);
}

static inline int lifeline_ERR_GET_REASON(unsigned long error) {
    return ERR_GET_REASON(error);
}

static inline int lifeline_ERR_GET_LIB(unsigned long error) {
    return ERR_GET_LIB(error);
}

static const int lifeline_SSL_R_UNEXPECTED_EOF_WHILE_READING = SSL_R_UNEXPECTED_EOF_WHILE_READING;

#endif
