package vhd

// Geometry exposes the CHS calculation to the black-box tests.
func Geometry(totalSectors int64) (c, h, s int64) { return geometry(totalSectors) }
