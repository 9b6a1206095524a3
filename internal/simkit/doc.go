// Package simkit is what both cluster simulators need: prismsim (Nutanix
// Prism) and xapisim (XCP-ng/XenServer) keep VM disks as plain files in a
// state directory and serve an API over HTTPS, and their commands and test
// helpers reach them the same way. It holds those pieces once:
//
//   - disk files: the state directory, point-in-time copies (a FICLONE
//     reflink, else a sparse copy), blank sparse disks, writes that leave
//     all-zero blocks as holes, data extents (SEEK_DATA/SEEK_HOLE), reads
//     that see zeros past a short file's end;
//   - the server side: the admin password file, a fresh CA and server
//     certificate, the HTTPS listener with the URL it advertises, the
//     server started and stopped, JSON answers, panics turned into errors,
//     random UUIDs;
//   - the client side: an http.Client trusting the simulator's CA, the
//     admin inventory (GET /sim/inventory) of a simulator elsewhere;
//   - the commands: the SIGINT/SIGTERM context, the repeatable --vm
//     NAME:FILE[,FILE...] flag, the contract lines they print first.
//
// What tells the simulators apart (their APIs and JSON shapes, XML-RPC,
// the objects an inventory lists and how they differ) stays in each of
// them. simkit imports no ahvfs package but internal helpers.
//
// Vocabulary: a disk file is a raw image whose length is the disk's size;
// an extent is a half-open byte range [Off, End) of one; the contract lines
// are the "Label: value" lines a simulator command prints before it serves,
// which scripts and tests read to find it.
package simkit
