// The system's libnghttp2 (1.52) for Swift. Composite macros that do not import are given as
// static values below.
#ifndef LIFELINE_CNGHTTP2_SHIM_H
#define LIFELINE_CNGHTTP2_SHIM_H

#include <nghttp2/nghttp2.h>

#endif
