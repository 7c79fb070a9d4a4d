/*
 * For the Windows smoke test under Wine only; never shipped. Rust's standard library
 * (1.78 and later) gets random bytes from ProcessPrng in bcryptprimitives.dll, which every
 * Windows 10 and 11 has but Wine has only since 8.13 (Debian 12 ships Wine 8.0). This
 * stand-in exports ProcessPrng over advapi32's RtlGenRandom (SystemFunction036).
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
  while (length > 0) {
    ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
    if (!SystemFunction036(data, chunk)) return FALSE;
    data += chunk;
    length -= chunk;
  }
  return TRUE;
}
