package nutanix

// SetPageSizes shrinks the list page sizes so tests page over few
// entities; it returns a function restoring the defaults.
func SetPageSizes(v3, v4 int) (restore func()) {
	o3, o4 := v3PageSize, v4PageSize
	v3PageSize, v4PageSize = v3, v4
	return func() { v3PageSize, v4PageSize = o3, o4 }
}
