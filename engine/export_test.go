package engine

// PackOf is the path of the pack that holds blob id (tests).
func PackOf(r *Repository, id ID) (string, error) {
	l, err := r.lookup(id)
	if err != nil {
		return "", err
	}
	return packPath(r.dir, l.Pack), nil
}
