// Package dr replicates restore points from one repository to another
// (ahvfs sync) and serves a repository to remote ahvfs clients over mutual
// TLS (ahvfs serve).
//
// A sync walks each restore point's manifest pages first: a page the
// target holds means every chunk it lists is there too (the target adopts
// a point only after checking that), so an unchanged page is a GiB of disk
// that needs nothing. The pages the target lacks are expanded into their
// chunk IDs, the chunks it lacks are sent, then the pages, then the
// restore point's record. Blobs move as they are stored (compressed,
// sealed), between repositories with the same transfer key
// (engine.Repository.TransferKey); the target checks each against its ID
// before it stores it, and a point becomes visible there only when all it
// needs is durable (engine.Repository.AdoptRestorePoint).
//
// Either side is an Endpoint: a repository opened in this process (Local)
// or an `ahvfs serve` reached over HTTPS (Remote). The wire protocol is
// described in wire.go and server.go.
package dr
