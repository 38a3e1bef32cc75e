// The system's OpenSSL 3 for Swift. Function-like macros and SSL_OP_* constants cannot be
// imported; the static inline functions below give them to Swift.
#ifndef LIFELINE_COPENSSL_SHIM_H
#define LIFELINE_COPENSSL_SHIM_H

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#endif
