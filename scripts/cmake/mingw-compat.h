/*
 * Forced into every C and C++ file of llama.cpp in the Windows (MinGW) build (mingw.cmake).
 * llama.cpp's CPU backend tells Windows 11 not to throttle its threads with
 * THREAD_POWER_THROTTLING_STATE, which the Windows SDK declares but the MinGW-w64 headers of
 * Debian 12 (version 10) do not. Same layout and values as the SDK's winnt.h.
 */
#ifndef ORION_MINGW_COMPAT_H
#define ORION_MINGW_COMPAT_H
#include <_mingw.h>
#if defined(__MINGW64_VERSION_MAJOR) && __MINGW64_VERSION_MAJOR < 11 && !defined(THREAD_POWER_THROTTLING_CURRENT_VERSION)
#define THREAD_POWER_THROTTLING_CURRENT_VERSION 1
#define THREAD_POWER_THROTTLING_EXECUTION_SPEED 0x1
typedef struct _THREAD_POWER_THROTTLING_STATE {
  unsigned long Version;
  unsigned long ControlMask;
  unsigned long StateMask;
} THREAD_POWER_THROTTLING_STATE;
#endif
#endif
