#ifndef SWIFT_PST_CLIBMOUNT_SHIM_H
#define SWIFT_PST_CLIBMOUNT_SHIM_H
#include <libmount/libmount.h>
#endif
