// Drives phigated with dicomweb-client (the library OHIF uses) over mTLS:
// searchForStudies -> retrieveStudyMetadata -> retrieveInstance.
// Usage: node dicomweb_client.js URL CERT KEY CA
// Prints one JSON line: {studies, metadata, instanceBytes, studyUID, names, raw}
// where `raw` is every response byte seen (base64), for the PHI scan.
'use strict';
const fs = require('fs');
const https = require('https');
const XMLHttpRequest = require('xhr2');
const [url, cert, key, ca] = process.argv.slice(2);

const agent = new https.Agent({
  cert: fs.readFileSync(cert), key: fs.readFileSync(key), ca: fs.readFileSync(ca),
  keepAlive: true,
});
XMLHttpRequest.nodejsSet({ httpsAgent: agent });
global.XMLHttpRequest = XMLHttpRequest;
const { api } = require('dicomweb-client');

const seen = [];
function keep(x) {
  if (x instanceof ArrayBuffer) seen.push(Buffer.from(x));
  else seen.push(Buffer.from(JSON.stringify(x)));
}

(async () => {
  const client = new api.DICOMwebClient({ url });
  const studies = await client.searchForStudies();
  keep(studies);
  const studyUID = studies[0]['0020000D'].Value[0];
  const metadata = await client.retrieveStudyMetadata({ studyInstanceUID: studyUID });
  keep(metadata);
  const m = metadata[0];
  const seriesUID = m['0020000E'].Value[0];
  const sopUID = m['00080018'].Value[0];
  const instance = await client.retrieveInstance({
    studyInstanceUID: studyUID, seriesInstanceUID: seriesUID, sopInstanceUID: sopUID,
  });
  keep(instance);
  const bytes = Buffer.from(instance);
  const names = studies.map((s) => (s['00100010'] && s['00100010'].Value)
    ? s['00100010'].Value[0].Alphabetic : '');
  console.log(JSON.stringify({
    studies: studies.length, metadata: metadata.length, instanceBytes: bytes.length,
    dicm: bytes.slice(128, 132).toString('latin1'), studyUID, names,
    raw: Buffer.concat(seen).toString('base64'),
  }));
  agent.destroy();
})().catch((e) => { console.error('dicomweb-client failed:', e && (e.message || e.status || e)); process.exit(1); });
