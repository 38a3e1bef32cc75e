#ifndef LIFELINE_CSPAWN_SHIM_H
#define LIFELINE_CSPAWN_SHIM_H

// posix_spawn's "close every descriptor from N up" file action (glibc 2.34+), which Swift's
// Glibc module does not export (it is a GNU extension). An upgrade starts the new process with
// only the listening sockets it hands over: without it, every client connection open at that
// moment would stay open in the new process after the old one exits.
#if defined(__linux__)
#include <features.h>
#endif
#include <spawn.h>

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from);
static inline int lifeline_spawn_close_from(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}
#else
static inline int lifeline_spawn_close_from(posix_spawn_file_actions_t *actions, int from) {
    (void)actions; (void)from;
    return -1;
}
#endif

#endif
