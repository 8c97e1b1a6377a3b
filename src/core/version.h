/* version.h — kasi's version string. */
#ifndef KASI_VERSION
#define KASI_VERSION "0.1.0"
#endif
