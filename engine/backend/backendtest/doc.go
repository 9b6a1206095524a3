// Package backendtest is the conformance suite of backend.Backend: one set
// of tests that every implementation (local directory, memory, the
// fault-injecting decorator without faults, later S3) must pass, so that
// the engine can rely on the contract written in package backend's
// documentation rather than on one implementation's habits.
//
// An implementation's test calls Run with a constructor of fresh, empty
// backends:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) backend.Backend {
//			b, err := backend.OpenLocal(t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return b
//		})
//	}
package backendtest
