package iscsi

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// SCSI operation codes used here (SPC-4, SBC-3).
const (
	scsiTestUnitReady = 0x00
	scsiInquiry       = 0x12
	scsiReadCap10     = 0x25
	scsiSyncCache10   = 0x35
	scsiRead16        = 0x88
	scsiWrite16       = 0x8a
	scsiServiceIn16   = 0x9e
	scsiReportLUNs    = 0xa0
	saReadCap16       = 0x10
)

// SCSI status codes (SAM-5).
const (
	statusGood           = 0x00
	statusCheckCondition = 0x02
	statusBusy           = 0x08
	statusReservation    = 0x18
	statusTaskSetFull    = 0x28
	statusACAActive      = 0x30
	statusTaskAborted    = 0x40
)

// SenseKey is the sense key of a CHECK CONDITION (SPC-4 table 48).
type SenseKey uint8

// Sense keys.
const (
	SenseNoSense        SenseKey = 0x0
	SenseRecoveredError SenseKey = 0x1
	SenseNotReady       SenseKey = 0x2
	SenseMediumError    SenseKey = 0x3
	SenseHardwareError  SenseKey = 0x4
	SenseIllegalRequest SenseKey = 0x5
	SenseUnitAttention  SenseKey = 0x6
	SenseDataProtect    SenseKey = 0x7
	SenseBlankCheck     SenseKey = 0x8
	SenseVendorSpecific SenseKey = 0x9
	SenseCopyAborted    SenseKey = 0xa
	SenseAbortedCommand SenseKey = 0xb
	SenseVolumeOverflow SenseKey = 0xd
	SenseMiscompare     SenseKey = 0xe
)

var senseKeyNames = [...]string{
	"NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR", "HARDWARE ERROR",
	"ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT", "BLANK CHECK", "VENDOR SPECIFIC",
	"COPY ABORTED", "ABORTED COMMAND", "RESERVED", "VOLUME OVERFLOW", "MISCOMPARE", "COMPLETED",
}

func (k SenseKey) String() string {
	if int(k) < len(senseKeyNames) {
		return senseKeyNames[k]
	}
	return fmt.Sprintf("sense key 0x%x", uint8(k))
}

// SenseError is a command that ended in CHECK CONDITION, with its decoded
// sense data (fixed or descriptor format).
type SenseError struct {
	Op   string // the command, e.g. "READ(16)"
	Key  SenseKey
	ASC  uint8 // additional sense code
	ASCQ uint8 // additional sense code qualifier
	// Info is the INFORMATION field (often the failing LBA) when Valid.
	Info  uint64
	Valid bool
	Raw   []byte
}

func (e *SenseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: check condition: %s", e.Op, e.Key)
	fmt.Fprintf(&b, ", asc/ascq 0x%02x/0x%02x", e.ASC, e.ASCQ)
	if d := ascText(e.ASC, e.ASCQ); d != "" {
		b.WriteString(" (" + d + ")")
	}
	if e.Valid {
		fmt.Fprintf(&b, ", info %d", e.Info)
	}
	return b.String()
}

// ascText names the additional sense codes a block device commonly returns.
func ascText(asc, ascq uint8) string {
	switch uint16(asc)<<8 | uint16(ascq) {
	case 0x0400:
		return "logical unit not ready, cause not reportable"
	case 0x0401:
		return "logical unit is in process of becoming ready"
	case 0x0402:
		return "logical unit not ready, initializing command required"
	case 0x1100:
		return "unrecovered read error"
	case 0x0c00:
		return "write error"
	case 0x2000:
		return "invalid command operation code"
	case 0x2100:
		return "logical block address out of range"
	case 0x2400:
		return "invalid field in CDB"
	case 0x2500:
		return "logical unit not supported"
	case 0x2700:
		return "write protected"
	case 0x2800:
		return "not ready to ready change, medium may have changed"
	case 0x2900:
		return "power on, reset, or bus device reset occurred"
	case 0x2a01:
		return "mode parameters changed"
	case 0x2a09:
		return "capacity data has changed"
	case 0x3a00:
		return "medium not present"
	case 0x3f0e:
		return "reported luns data has changed"
	case 0x4700:
		return "scsi parity error"
	case 0x4b00:
		return "data phase error"
	}
	return ""
}

// parseSense decodes sense data in fixed (0x70, 0x71) or descriptor (0x72,
// 0x73) format. It never fails: unknown formats keep only Raw.
func parseSense(op string, b []byte) *SenseError {
	e := &SenseError{Op: op, Raw: append([]byte(nil), b...)}
	if len(b) < 1 {
		return e
	}
	switch b[0] & 0x7f {
	case 0x70, 0x71:
		if len(b) >= 3 {
			e.Key = SenseKey(b[2] & 0x0f)
		}
		if len(b) >= 7 && b[0]&0x80 != 0 {
			e.Valid = true
			e.Info = uint64(binary.BigEndian.Uint32(b[3:7]))
		}
		if len(b) >= 14 {
			e.ASC, e.ASCQ = b[12], b[13]
		}
	case 0x72, 0x73:
		if len(b) >= 4 {
			e.Key = SenseKey(b[1] & 0x0f)
			e.ASC, e.ASCQ = b[2], b[3]
		}
		if len(b) >= 8 {
			desc := b[8:]
			if n := int(b[7]); n < len(desc) {
				desc = desc[:n]
			}
			for len(desc) >= 2 {
				typ, n := desc[0], int(desc[1])+2
				if n > len(desc) {
					break
				}
				if typ == 0x00 && n >= 12 { // information descriptor
					e.Valid = desc[2]&0x80 != 0
					e.Info = binary.BigEndian.Uint64(desc[4:12])
				}
				desc = desc[n:]
			}
		}
	}
	return e
}

// StatusError is a command that ended with a SCSI status other than GOOD
// and CHECK CONDITION (BUSY, RESERVATION CONFLICT, TASK SET FULL, ...), or
// with an iSCSI response code other than "command completed at target".
type StatusError struct {
	Op       string
	Status   uint8
	Response uint8 // iSCSI response code; 0 when the target completed the command
}

func (e *StatusError) Error() string {
	if e.Response != 0 {
		return fmt.Sprintf("%s: target failure (iscsi response 0x%02x)", e.Op, e.Response)
	}
	name := map[uint8]string{
		statusBusy: "BUSY", statusReservation: "RESERVATION CONFLICT",
		statusTaskSetFull: "TASK SET FULL", statusACAActive: "ACA ACTIVE", statusTaskAborted: "TASK ABORTED",
	}[e.Status]
	if name == "" {
		name = fmt.Sprintf("0x%02x", e.Status)
	}
	return fmt.Sprintf("%s: scsi status %s", e.Op, name)
}

func opString(cdb []byte) string {
	if len(cdb) == 0 {
		return "SCSI command"
	}
	switch cdb[0] {
	case scsiTestUnitReady:
		return "TEST UNIT READY"
	case scsiInquiry:
		return "INQUIRY"
	case scsiReadCap10:
		return "READ CAPACITY(10)"
	case scsiSyncCache10:
		return "SYNCHRONIZE CACHE(10)"
	case scsiRead16:
		return "READ(16)"
	case scsiWrite16:
		return "WRITE(16)"
	case scsiServiceIn16:
		return "READ CAPACITY(16)"
	case scsiReportLUNs:
		return "REPORT LUNS"
	}
	return fmt.Sprintf("SCSI op 0x%02x", cdb[0])
}

func cdbInquiry(evpd bool, page uint8, alloc uint16) []byte {
	cdb := make([]byte, 6)
	cdb[0] = scsiInquiry
	if evpd {
		cdb[1] = 1
		cdb[2] = page
	}
	binary.BigEndian.PutUint16(cdb[3:5], alloc)
	return cdb
}

func cdbReportLUNs(alloc uint32) []byte {
	cdb := make([]byte, 12)
	cdb[0] = scsiReportLUNs
	binary.BigEndian.PutUint32(cdb[6:10], alloc)
	return cdb
}

func cdbReadCap16(alloc uint32) []byte {
	cdb := make([]byte, 16)
	cdb[0] = scsiServiceIn16
	cdb[1] = saReadCap16
	binary.BigEndian.PutUint32(cdb[10:14], alloc)
	return cdb
}

func cdbRW16(op uint8, lba uint64, blocks uint32) []byte {
	cdb := make([]byte, 16)
	cdb[0] = op
	binary.BigEndian.PutUint64(cdb[2:10], lba)
	binary.BigEndian.PutUint32(cdb[10:14], blocks)
	return cdb
}

// encodeLUN builds the 8-byte LUN field: peripheral addressing below 256,
// flat addressing below 16384 (SAM-5 section 4.7).
func encodeLUN(n uint64) ([8]byte, error) {
	var b [8]byte
	switch {
	case n < 256:
		b[1] = byte(n)
	case n < 16384:
		b[0] = 0x40 | byte(n>>8)
		b[1] = byte(n)
	default:
		return b, fmt.Errorf("LUN %d out of range (0-16383)", n)
	}
	return b, nil
}

// decodeLUN is the inverse of encodeLUN for single-level LUNs; other
// forms are returned as the raw 64-bit value.
func decodeLUN(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	if binary.BigEndian.Uint64(b)&0xffffffffffff == 0 {
		switch b[0] >> 6 {
		case 0:
			if b[0]&0x3f == 0 {
				return uint64(b[1])
			}
		case 1:
			return uint64(b[0]&0x3f)<<8 | uint64(b[1])
		}
	}
	return binary.BigEndian.Uint64(b)
}

// DeviceType is the peripheral device type of INQUIRY (SPC-4 table 141).
type DeviceType uint8

// Device types seen on iSCSI targets.
const (
	TypeDisk       DeviceType = 0x00
	TypeTape       DeviceType = 0x01
	TypeCDROM      DeviceType = 0x05
	TypeController DeviceType = 0x0c
	TypeEnclosure  DeviceType = 0x0d
	TypeUnknown    DeviceType = 0x1f
)

func (t DeviceType) String() string {
	switch t {
	case TypeDisk:
		return "disk"
	case TypeTape:
		return "tape"
	case TypeCDROM:
		return "cdrom"
	case TypeController:
		return "controller"
	case TypeEnclosure:
		return "enclosure"
	case TypeUnknown:
		return "unknown"
	}
	return fmt.Sprintf("type 0x%02x", uint8(t))
}

// Inquiry is the standard INQUIRY data of a logical unit.
type Inquiry struct {
	DeviceType DeviceType
	// Qualifier is the peripheral qualifier: 0 connected, 1 not connected,
	// 3 no logical unit at this LUN.
	Qualifier uint8
	Removable bool
	Version   uint8
	Vendor    string // T10 vendor identification, spaces trimmed
	Product   string
	Revision  string
}

func parseInquiry(b []byte) (*Inquiry, error) {
	if len(b) < 36 {
		return nil, fmt.Errorf("%w: INQUIRY data of %d bytes", ErrProtocol, len(b))
	}
	trim := func(x []byte) string { return strings.TrimRight(string(x), " \x00") }
	return &Inquiry{
		DeviceType: DeviceType(b[0] & 0x1f),
		Qualifier:  b[0] >> 5,
		Removable:  b[1]&0x80 != 0,
		Version:    b[2],
		Vendor:     trim(b[8:16]),
		Product:    trim(b[16:32]),
		Revision:   trim(b[32:36]),
	}, nil
}

// Designator is one identification descriptor of the Device Identification
// VPD page (0x83).
type Designator struct {
	// Association: 0 logical unit, 1 target port, 2 target device.
	Association uint8
	// Type: 1 T10 vendor ID, 2 EUI-64, 3 NAA, 4 relative target port,
	// 5 target port group, 6 logical unit group, 7 MD5, 8 SCSI name string.
	Type uint8
	// CodeSet: 1 binary, 2 ASCII, 3 UTF-8.
	CodeSet uint8
	Value   []byte
}

// String formats the designator the way udev names disks: NAA and EUI-64
// as hex (NAA with its "naa." prefix), text designators as text.
func (d Designator) String() string {
	switch {
	case d.CodeSet == 2 || d.CodeSet == 3:
		return strings.TrimRight(string(d.Value), " \x00")
	case d.Type == 3:
		return "naa." + hex.EncodeToString(d.Value)
	case d.Type == 2:
		return "eui." + hex.EncodeToString(d.Value)
	}
	return hex.EncodeToString(d.Value)
}

func parseDeviceID(b []byte) ([]Designator, error) {
	if len(b) < 4 || b[1] != 0x83 {
		return nil, fmt.Errorf("%w: bad device identification page", ErrProtocol)
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	body := b[4:]
	if n < len(body) {
		body = body[:n]
	}
	var out []Designator
	for len(body) >= 4 {
		l := int(body[3])
		if 4+l > len(body) {
			break
		}
		out = append(out, Designator{
			CodeSet:     body[0] & 0x0f,
			Association: (body[1] >> 4) & 0x3,
			Type:        body[1] & 0x0f,
			Value:       append([]byte(nil), body[4:4+l]...),
		})
		body = body[4+l:]
	}
	return out, nil
}
