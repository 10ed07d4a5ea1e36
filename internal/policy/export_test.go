package policy

// MatchGlob compiles pattern and matches s, for the tests of package
// policy_test.
func MatchGlob(pattern, s string) (bool, error) {
	g, err := compileGlob(pattern)
	if err != nil {
		return false, err
	}
	return g.match(s), nil
}
