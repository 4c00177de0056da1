package aliyun

// SignMNS is the signature part of an MNS Authorization header ("MNS AccessKeyId:" +
// SignMNS(...)). Unlike RPC, MNS keys the HMAC on the bare secret, without "&".
func SignMNS(stringToSign, secret string) string {
	return hmacSHA1Base64(secret, stringToSign)
}

// WebsocketAuth is the authentication a client presents to the MNS WebSocket server to
// subscribe to topic/subscription (POST /mns/topic/websocket/info). It signs a virtual
// "PUT" of the subscription with x-mns-auth-only, so the server only checks it and never
// performs the PUT. date must be the RFC 1123 GMT date returned to the client alongside.
func WebsocketAuth(secret, date, mnsVersion, topic, subscription string) string {
	stringToSign := "PUT\n\ntext/xml;charset=UTF-8\n" + date +
		"\nx-mns-auth-only:1\nx-mns-version:" + mnsVersion +
		"\n/topics/" + topic + "/subscriptions/" + subscription
	return SignMNS(stringToSign, secret)
}
