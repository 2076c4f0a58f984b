package config

// tokKind is the class of a lexical token. The classes mirror the tokens of
// drbd-utils' 8.4 scanner (user/v84/drbdadm_scanner.fl) one to one, because
// the 8.4 grammar is defined by which class a word falls into: every
// keyword is reserved everywhere ("on", "no", "disk" can never be a host
// name or an option value), and an option keyword's class decides in which
// sections it is accepted.
type tokKind int

const (
	tkEOF  tokKind = iota + 1
	tkChar         // one of { } ; [ ] : (the character is in tok.text)
	tkElse         // any other single character the scanner does not know

	tkGlobal
	tkResource
	tkOn
	tkStacked
	tkIgnore
	tkNet
	tkDisk
	tkSkip
	tkSyncer
	tkStartup
	tkDisableIPVerification
	tkDialogRefresh
	tkHandler
	tkCommon
	tkAddress
	tkAltAddress
	tkDevice
	tkMinor
	tkMetaDisk
	tkFlexMetaDisk
	tkMinorCount
	tkIPAddr
	tkInteger
	tkString
	tkDiskFlag
	tkDiskNoFlag
	tkDiskOption
	tkNetFlag
	tkNetNoFlag
	tkNetOption
	tkStartupFlag
	tkStartupOption
	tkStartupDelegate
	tkHandlerOption
	tkUsageCount
	tkAsk
	tkYes
	tkNo
	tkThisHost
	tkRemoteHost
	tkProxy
	tkInside
	tkOutside
	tkProxyOption
	tkProxyDelegate
	tkErrStringTooLong
	tkErrDQStringTooLong
	tkErrDQString
	tkSCI
	tkSDP
	tkSSocks
	tkIPv4
	tkIPv6
	tkIPAddr6
	tkNetDelegate
	tkInclude
	tkFloating
	tkDeprecatedOption
	tkVolume
	tkCmdTimeoutShort
	tkCmdTimeoutMedium
	tkCmdTimeoutLong
	tkResOption
	tkOptions
	tkUdevAlwaysUseVnr
)

// tokGroup holds the extra class bits some keywords carry in the 8.4
// scanner: a syncer{} keyword is also a disk, net or options keyword, and
// a few net keywords are also proxy keywords.
type tokGroup uint8

const (
	grpSyncerOld tokGroup = 1 << iota // accepted inside the legacy syncer {} section
	grpProxy                          // accepted inside proxy { options {} }
)

// rangeCheck names the range drbdadm-84 checks an option's value against
// while parsing (enum range_checks in drbdadm_parser.h). Options without
// one are passed through by drbdadm and only checked later by drbdsetup or
// the kernel; gdrbd checks every value (see options.go).
type rangeCheck int

const (
	rcNone rangeCheck = iota + 1
	rcMinorCount
	rcDialogRefresh
	rcDiskSize
	rcTimeout
	rcConnectInt
	rcPingInt
	rcMaxBuffers
	rcMaxEpochSize
	rcSndbufSize
	rcRcvbufSize
	rcKoCount
	rcRate
	rcALExtents
	rcPort
	rcWFCTimeout
	rcDegrWFCTimeout
	rcOutdatedWFCTimeout
	rcCPlanAhead
	rcCDelayTarget
	rcCFillTarget
	rcCMaxRate
	rcCMinRate
	rcCongFill
	rcCongExtents
	rcProtocol
)

type keyword struct {
	kind  tokKind
	group tokGroup
	rc    rangeCheck
}

// keywords is the scanner's keyword list. Every keyword consists of
// characters of the STRING class, so a word is a keyword exactly when the
// whole word equals it (flex prefers the earlier rule on equal length).
var keywords = map[string]keyword{
	"on":                        {kind: tkOn},
	"ignore-on":                 {kind: tkIgnore},
	"stacked-on-top-of":         {kind: tkStacked},
	"floating":                  {kind: tkFloating},
	"no":                        {kind: tkNo},
	"net":                       {kind: tkNet},
	"yes":                       {kind: tkYes},
	"ask":                       {kind: tkAsk},
	"skip":                      {kind: tkSkip},
	"disk":                      {kind: tkDisk},
	"proxy":                     {kind: tkProxy},
	"minor":                     {kind: tkMinor},
	"inside":                    {kind: tkInside},
	"volume":                    {kind: tkVolume},
	"cmd-timeout-short":         {kind: tkCmdTimeoutShort},
	"cmd-timeout-medium":        {kind: tkCmdTimeoutMedium},
	"cmd-timeout-long":          {kind: tkCmdTimeoutLong},
	"syncer":                    {kind: tkSyncer},
	"device":                    {kind: tkDevice},
	"global":                    {kind: tkGlobal},
	"common":                    {kind: tkCommon},
	"options":                   {kind: tkOptions},
	"outside":                   {kind: tkOutside},
	"address":                   {kind: tkAddress},
	"alternate-link-address":    {kind: tkAltAddress},
	"startup":                   {kind: tkStartup},
	"include":                   {kind: tkInclude},
	"handlers":                  {kind: tkHandler},
	"minor-count":               {kind: tkMinorCount},
	"disable-ip-verification":   {kind: tkDisableIPVerification},
	"udev-always-use-vnr":       {kind: tkUdevAlwaysUseVnr},
	"dialog-refresh":            {kind: tkDialogRefresh},
	"resource":                  {kind: tkResource},
	"meta-disk":                 {kind: tkMetaDisk},
	"flexible-meta-disk":        {kind: tkFlexMetaDisk},
	"usage-count":               {kind: tkUsageCount},
	"_this_host":                {kind: tkThisHost},
	"_remote_host":              {kind: tkRemoteHost},
	"sci":                       {kind: tkSCI},
	"ssocks":                    {kind: tkSSocks},
	"sdp":                       {kind: tkSDP},
	"ipv4":                      {kind: tkIPv4},
	"ipv6":                      {kind: tkIPv6},
	"size":                      {kind: tkDiskOption, rc: rcDiskSize},
	"on-io-error":               {kind: tkDiskOption},
	"fencing":                   {kind: tkDiskOption},
	"max-bio-bvecs":             {kind: tkDiskOption},
	"disk-timeout":              {kind: tkDiskOption},
	"read-balancing":            {kind: tkDiskOption},
	"rs-discard-granularity":    {kind: tkDiskOption},
	"disable-write-same":        {kind: tkDiskFlag},
	"use-bmbv":                  {kind: tkDiskFlag},
	"disk-barrier":              {kind: tkDiskFlag},
	"disk-flushes":              {kind: tkDiskFlag},
	"disk-drain":                {kind: tkDiskFlag},
	"md-flushes":                {kind: tkDiskFlag},
	"no-disk-barrier":           {kind: tkDiskNoFlag},
	"no-disk-flushes":           {kind: tkDiskNoFlag},
	"no-disk-drain":             {kind: tkDiskNoFlag},
	"no-md-flushes":             {kind: tkDiskNoFlag},
	"timeout":                   {kind: tkNetOption, rc: rcTimeout},
	"protocol":                  {kind: tkNetOption, rc: rcProtocol},
	"ko-count":                  {kind: tkNetOption, rc: rcKoCount},
	"ping-int":                  {kind: tkNetOption, rc: rcPingInt},
	"max-buffers":               {kind: tkNetOption, rc: rcMaxBuffers},
	"sndbuf-size":               {kind: tkNetOption, group: grpProxy | grpSyncerOld, rc: rcSndbufSize},
	"rcvbuf-size":               {kind: tkNetOption, group: grpProxy | grpSyncerOld, rc: rcRcvbufSize},
	"connect-int":               {kind: tkNetOption, rc: rcConnectInt},
	"cram-hmac-alg":             {kind: tkNetOption},
	"shared-secret":             {kind: tkNetOption},
	"max-epoch-size":            {kind: tkNetOption, rc: rcMaxEpochSize},
	"after-sb-0pri":             {kind: tkNetOption},
	"after-sb-1pri":             {kind: tkNetOption},
	"after-sb-2pri":             {kind: tkNetOption},
	"rr-conflict":               {kind: tkNetOption},
	"ping-timeout":              {kind: tkNetOption, group: grpProxy | grpSyncerOld},
	"unplug-watermark":          {kind: tkNetOption},
	"data-integrity-alg":        {kind: tkNetOption},
	"on-congestion":             {kind: tkNetOption},
	"socket-check-timeout":      {kind: tkNetOption},
	"congestion-fill":           {kind: tkNetOption, rc: rcCongFill},
	"congestion-extents":        {kind: tkNetOption, rc: rcCongExtents},
	"allow-two-primaries":       {kind: tkNetFlag},
	"always-asbp":               {kind: tkNetFlag},
	"no-tcp-cork":               {kind: tkNetNoFlag},
	"tcp-cork":                  {kind: tkNetFlag},
	"discard-my-data":           {kind: tkNetDelegate},
	"rate":                      {kind: tkDiskOption, group: grpSyncerOld, rc: rcRate},
	"resync-rate":               {kind: tkDiskOption, rc: rcRate},
	"after":                     {kind: tkDiskOption, group: grpSyncerOld},
	"resync-after":              {kind: tkDiskOption},
	"verify-alg":                {kind: tkNetOption, group: grpSyncerOld},
	"csums-alg":                 {kind: tkNetOption, group: grpSyncerOld},
	"csums-after-crash-only":    {kind: tkNetFlag},
	"al-extents":                {kind: tkDiskOption, group: grpSyncerOld, rc: rcALExtents},
	"al-updates":                {kind: tkDiskFlag},
	"discard-zeroes-if-aligned": {kind: tkDiskFlag},
	"cpu-mask":                  {kind: tkResOption, group: grpSyncerOld},
	"use-rle":                   {kind: tkNetFlag, group: grpSyncerOld},
	"delay-probe-volume":        {kind: tkDeprecatedOption},
	"delay-probe-interval":      {kind: tkDeprecatedOption},
	"c-plan-ahead":              {kind: tkDiskOption, group: grpSyncerOld, rc: rcCPlanAhead},
	"c-delay-target":            {kind: tkDiskOption, group: grpSyncerOld, rc: rcCDelayTarget},
	"c-fill-target":             {kind: tkDiskOption, group: grpSyncerOld, rc: rcCFillTarget},
	"c-max-rate":                {kind: tkDiskOption, group: grpSyncerOld, rc: rcCMaxRate},
	"c-min-rate":                {kind: tkDiskOption, group: grpSyncerOld, rc: rcCMinRate},
	"throttle-threshold":        {kind: tkDeprecatedOption},
	"hold-off-threshold":        {kind: tkDeprecatedOption},
	"on-no-data-accessible":     {kind: tkResOption, group: grpSyncerOld},
	"wfc-timeout":               {kind: tkStartupOption, rc: rcWFCTimeout},
	"degr-wfc-timeout":          {kind: tkStartupOption, rc: rcDegrWFCTimeout},
	"outdated-wfc-timeout":      {kind: tkStartupOption, rc: rcOutdatedWFCTimeout},
	"stacked-timeouts":          {kind: tkStartupDelegate},
	"become-primary-on":         {kind: tkStartupDelegate},
	"wait-after-sb":             {kind: tkStartupFlag},
	"pri-on-incon-degr":         {kind: tkHandlerOption},
	"pri-lost-after-sb":         {kind: tkHandlerOption},
	"pri-lost":                  {kind: tkHandlerOption},
	"initial-split-brain":       {kind: tkHandlerOption},
	"split-brain":               {kind: tkHandlerOption},
	"outdate-peer":              {kind: tkHandlerOption},
	"fence-peer":                {kind: tkHandlerOption},
	"unfence-peer":              {kind: tkHandlerOption},
	"local-io-error":            {kind: tkHandlerOption},
	"before-resync-target":      {kind: tkHandlerOption},
	"after-resync-target":       {kind: tkHandlerOption},
	"before-resync-source":      {kind: tkHandlerOption},
	"memlimit":                  {kind: tkProxyOption, group: grpProxy | grpSyncerOld},
	"read-loops":                {kind: tkProxyOption, group: grpProxy | grpSyncerOld},
	"compression":               {kind: tkProxyOption, group: grpProxy | grpSyncerOld},
	"bwlimit":                   {kind: tkProxyOption, group: grpProxy | grpSyncerOld},
	"plugin":                    {kind: tkProxyDelegate},
	"out-of-sync":               {kind: tkHandlerOption},
}

// NB: the scanner's TK_PROXY_GROUP (0x3000) includes the TK_SYNCER_OLD_OPT
// bit (0x2000). That is why proxy keywords carry grpSyncerOld above, and it
// has two visible effects that gdrbd reproduces: every syncer keyword is
// also accepted inside proxy { options {} }, and inside syncer {} the proxy
// keywords are rejected only after being recognised as syncer keywords
// (same error either way).

// deprecatedAliases renames old option names the way drbdadm-84 does
// (check_and_change_deprecated_alias), per the class the option is parsed as.
var deprecatedAliases = map[tokKind]map[string]string{
	tkHandlerOption: {"outdate-peer": "fence-peer"},
	tkDiskOption:    {"rate": "resync-rate", "after": "resync-after"},
}

// tokenNames renders token classes the way gdrbd's error messages name them.
func (k tokKind) String() string {
	switch k {
	case tkEOF:
		return "end of file"
	case tkChar, tkElse:
		return "character"
	case tkString:
		return "word"
	case tkInteger:
		return "number"
	case tkIPAddr:
		return "IPv4 address"
	case tkIPAddr6:
		return "IPv6 address"
	case tkErrStringTooLong, tkErrDQStringTooLong, tkErrDQString:
		return "bad string"
	}
	return "keyword"
}
