// Package dr replicates restore points to a disaster-recovery repository:
// manifests first, then only the chunks the other side lacks, over mutually
// authenticated TLS, throttled and resumable.
package dr
