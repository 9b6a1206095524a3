package engine

// BlobLocation is where the index stores blob id (tests): the path of its
// pack, its offset there and its stored size.
func BlobLocation(r *Repository, id ID) (pack string, off int64, stored int, err error) {
	l, err := r.lookup(id)
	if err != nil {
		return "", 0, 0, err
	}
	return packPath(r.dir, l.Pack), int64(l.Offset), int(l.Stored), nil
}
