package wal

import (
	"encoding/binary"
	"hash/crc32"
)

// The on-disk format.
//
// Version 2 segment: segHeader ("AWAL" + uint32 version 2), then records:
//
//	offset 0  uint32 recMagic
//	offset 4  uint32 payload length
//	offset 8  uint64 index of the record in its segment, from 0
//	offset 16 uint32 CRC-32C (Castagnoli) of bytes 4..16 and the payload
//	offset 20 payload
//
// all little-endian. The CRC covers the length and the index, so a damaged length can never send
// replay to a wrong place unnoticed; the magic lets replay find the next record after damage; the
// index tells exactly how many records the damage took.
//
// Version 1 segment (before this package wrote headers): records only, each a uint32 length, a
// uint32 CRC-32C of the payload, then the payload. Still replayed; it cannot be resynchronised, so
// damage in it ends the segment.
const (
	segSuffix     = ".wal"
	segHeaderSize = 8
	segMagic      = "AWAL"
	formatVersion = 2

	recMagic      = 0x8d_a1_1e_2f
	recHeaderSize = 20
	v1HeaderSize  = 8

	// MaxRecord bounds one record so a corrupt length cannot make replay allocate gigabytes.
	MaxRecord = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func segmentHeader() []byte {
	h := make([]byte, segHeaderSize)
	copy(h, segMagic)
	binary.LittleEndian.PutUint32(h[4:], formatVersion)
	return h
}

func appendRecord(dst []byte, index uint64, payload []byte) []byte {
	var hdr [recHeaderSize]byte
	binary.LittleEndian.PutUint32(hdr[0:4], recMagic)
	binary.LittleEndian.PutUint32(hdr[4:8], uint32(len(payload)))
	binary.LittleEndian.PutUint64(hdr[8:16], index)
	sum := crc32.Update(0, castagnoli, hdr[4:16])
	sum = crc32.Update(sum, castagnoli, payload)
	binary.LittleEndian.PutUint32(hdr[16:20], sum)
	dst = append(dst, hdr[:]...)
	return append(dst, payload...)
}

// recordHeader is a decoded version 2 record header.
type recordHeader struct {
	length uint32
	index  uint64
	sum    uint32
}

// parseHeader decodes hdr (recHeaderSize bytes) and says whether it starts with the magic.
func parseHeader(hdr []byte) (recordHeader, bool) {
	if binary.LittleEndian.Uint32(hdr[0:4]) != recMagic {
		return recordHeader{}, false
	}
	return recordHeader{
		length: binary.LittleEndian.Uint32(hdr[4:8]),
		index:  binary.LittleEndian.Uint64(hdr[8:16]),
		sum:    binary.LittleEndian.Uint32(hdr[16:20]),
	}, true
}

func (h recordHeader) check(hdr, payload []byte) bool {
	sum := crc32.Update(0, castagnoli, hdr[4:16])
	return crc32.Update(sum, castagnoli, payload) == h.sum
}
