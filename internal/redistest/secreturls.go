package redistest

import "strings"

// URLSecret is in every piece of every password of SecretURLs, so that a
// check for it finds a password printed whole or in part.
const URLSecret = "SeCrEt"

// SecretURLs returns Redis URLs of every form the README documents, for
// addr, with a password in each place one can be put (user info, the
// password and sentinel_password options) and with the characters URLs
// reserve in it, encoded or raw (# @ : / ? % & space and a control
// character). Some do not parse; none may be echoed with its password.
func SecretURLs(addr string) []string {
	forms := []string{
		// user info
		"redis://:SeCrEt1@ADDR/0",
		"redis://user:SeCrEt1@ADDR/0",
		"redis://SeCrEt1@ADDR/0",
		"redis://:SeCrEt1%23SeCrEt2%40SeCrEt3%3ASeCrEt4%2FSeCrEt5%25SeCrEt6%3FSeCrEt7@ADDR/0",
		"redis://:SeCrEt1:SeCrEt2@ADDR/0",
		"redis://:SeCrEt1@SeCrEt2@ADDR/0",
		"redis://:SeCrEt1#SeCrEt2@ADDR/0",
		"redis://:SeCrEt1/SeCrEt2@ADDR/0",
		"redis://:SeCrEt1?SeCrEt2@ADDR/0",
		"redis://:SeCrEt1%SeCrEt2@ADDR/0",
		"redis://:SeCrEt1 SeCrEt2@ADDR/0",
		"redis://:SeCrEt1\nSeCrEt2@ADDR/0",
		"redis://user:1SeCrEt1/SeCrEt2@ADDR/0",
		"rediss://:SeCrEt1@ADDR/0",
		"rediss://user:SeCrEt1#SeCrEt2@ADDR/0",
		"redis-sentinel://:SeCrEt1@ADDR/0?master=mymaster",
		"redis-sentinel://user:SeCrEt1/SeCrEt2@ADDR?master=mymaster",
		"redis-cluster://:SeCrEt1@ADDR",
		"redis-cluster://user:SeCrEt1#SeCrEt2@ADDR",
		"redis-cluster://:SeCrEt1%40SeCrEt2@ADDR,ADDR",
		// options
		"redis://ADDR/0?password=SeCrEt1",
		"rediss://ADDR/0?client_name=smsq&password=SeCrEt1",
		"redis://ADDR/0?dial_timeout=SeCrEt1",
		"redis://ADDR/SeCrEt1",
		"redis-sentinel://:SeCrEt1@ADDR/0?master=mymaster&sentinel_password=SeCrEt2",
		"redis-sentinel://ADDR?master=mymaster&sentinel_password=SeCrEt1%23SeCrEt2",
		"redis-sentinel://ADDR?master=mymaster&sentinel_password=SeCrEt1#SeCrEt2",
		"redis-sentinel://ADDR?master=mymaster&sentinel_password=SeCrEt1&SeCrEt2",
		"redis-sentinel://ADDR?master=mymaster&sentinel_password=SeCrEt1@SeCrEt2",
		"redis-sentinel://ADDR?master=mymaster&password=SeCrEt1",
		"redis-sentinel://ADDR/SeCrEt1?master=mymaster",
		"redis-cluster://ADDR?password=SeCrEt1",
		"redis-cluster://ADDR?sentinel_password=SeCrEt1&SeCrEt2=SeCrEt3",
		// not a Redis URL at all
		"ftp://:SeCrEt1@ADDR",
		":SeCrEt1@ADDR",
		"SeCrEt1:SeCrEt2@ADDR",
	}
	out := make([]string, len(forms))
	for i, f := range forms {
		out[i] = strings.ReplaceAll(f, "ADDR", addr)
	}
	return out
}
