package config

// The raw model mirrors drbd-utils' own structures (struct d_resource,
// d_host_info, d_volume, d_option in user/v84/drbdadm.h): option lists in
// source order, inheritance done by the same list operations. Keeping this
// shape is what makes gdrbd agree with drbdadm-84 on the subtle cases
// (duplicate options, which level wins, the order `dump` prints), and the
// typed Config is derived from it afterwards.

// rawOpt is one `name value;` as written (after 8.4's renames: rate ->
// resync-rate, after -> resync-after, outdate-peer -> fence-peer, no-X ->
// X no, a bare flag -> yes).
type rawOpt struct {
	name    string
	value   string
	noValue bool // stacked-timeouts: printed without a value
	escaped bool // value is printed as is (become-primary-on)
	pos     Position
	valPos  Position
}

type optList []*rawOpt

// find returns the first option called name (drbdadm's find_opt).
func (l optList) find(name string) *rawOpt {
	for _, o := range l {
		if o.name == name {
			return o
		}
	}
	return nil
}

// last returns the last option called name: when drbdadm passes a list to
// drbdsetup, a later --opt overrides an earlier one.
func (l optList) last(name string) *rawOpt {
	for i := len(l) - 1; i >= 0; i-- {
		if l[i].name == name {
			return l[i]
		}
	}
	return nil
}

// expandFrom prepends every option of from whose name l lacks, one at a
// time, which reverses their order (drbdadm's expand_opts).
func (l optList) expandFrom(from optList) optList {
	for _, o := range from {
		if l.find(o.name) == nil {
			c := *o
			l = append(optList{&c}, l...)
		}
	}
	return l
}

type rawVolume struct {
	vnr       int
	implicit  bool
	device    string // "" if only a minor was given
	minor     int    // -1 if unknown
	disk      string
	hasDisk   bool
	metaDisk  string
	metaIndex string // "internal", "flexible" or a number
	hasMeta   bool
	diskOpts  optList // as written
	effDisk   optList // merged with the resource's and common's (expandCommon)
	// diskInherited: the disk came from a resource-level statement.
	diskInherited bool
	pos           Position
}

type rawAddr struct {
	family string
	addr   string
	port   string
	pos    Position
}

func (a *rawAddr) isSet() bool { return a != nil && a.addr != "" }

type rawProxy struct {
	onHosts    []string
	inside     rawAddr
	outside    rawAddr
	options    optList
	plugins    optList
	effOptions optList
	effPlugins optList
	pos        Position
}

type hostKind int

const (
	hostOn hostKind = iota + 1
	hostFloating
	hostStacked
	hostThis   // _this_host
	hostRemote // _remote_host
)

type rawHost struct {
	kind      hostKind
	onHosts   []string
	volumes   []*rawVolume // sorted by vnr, stable
	address   rawAddr
	alt       rawAddr
	proxy     *rawProxy
	lowerName string
	lower     *rawResource
	resOpts   optList
	pos       Position
	ext       []extSetting
}

func (h *rawHost) volume(vnr int) *rawVolume {
	for _, v := range h.volumes {
		if v.vnr == vnr {
			return v
		}
	}
	return nil
}

type rawResource struct {
	name            string
	pos             Position
	file            string // canonical path of the defining file
	startLine       int
	volumes         []*rawVolume // resource-level volumes, inherited by hosts
	hosts           []*rawHost
	me, peer        *rawHost
	net             optList
	disk            optList
	res             optList
	startup         optList
	handlers        optList
	proxyOpts       optList
	proxyPlugins    optList
	becomePrimaryOn []string
	bpoPos          Position
	stackedTimeouts bool
	ignore          bool
	stacked         bool
	stackedOnOne    bool
	ext             []extSetting
	// eff is the resource with common merged in (expandCommon); the lists
	// above stay as written, for the dump.
	eff effLists
}

type effLists struct {
	net, disk, res, startup, handlers, proxyOpts, proxyPlugins optList
	stackedTimeouts                                            bool
	becomePrimaryOn                                            []string
	bpoPos                                                     Position
}

// insertSorted inserts v after every volume with a number <= v.vnr
// (drbdadm's INSERT_SORTED is stable).
func insertSorted(vols []*rawVolume, v *rawVolume) []*rawVolume {
	i := 0
	for i < len(vols) && vols[i].vnr <= v.vnr {
		i++
	}
	vols = append(vols, nil)
	copy(vols[i+1:], vols[i:])
	vols[i] = v
	return vols
}

type rawGlobal struct {
	disableIPVerification bool
	udevAlwaysUseVnr      bool
	minorCount            int
	dialogRefresh         int
	usageCount            UsageCount
	cmdTimeoutShort       int
	cmdTimeoutMedium      int
	cmdTimeoutLong        int
	set                   map[string]Position
}
