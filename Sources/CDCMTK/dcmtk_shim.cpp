// dcmtk_shim.cpp — implementation of dcmtk_shim.h (in progress).
#include "dcmtk_shim.h"
