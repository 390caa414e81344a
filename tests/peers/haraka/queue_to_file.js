'use strict'
// Test-only queue plugin: writes each accepted message (with all headers that
// earlier plugins added, e.g. rspamd's milter.add_headers) to <dir>/<uuid>.eml.
// Written to <uuid>.eml.tmp first and renamed, so a file that exists is complete;
// next(OK) is called only after the rename, so the 250 reply implies the file exists.
const fs = require('node:fs')
const path = require('node:path')

exports.register = function () {
  this.load_ini()
  this.register_hook('queue', 'save_to_file')
}

exports.load_ini = function () {
  this.cfg = this.config.get('queue_to_file.ini', () => this.load_ini())
  this.cfg.main ??= {}
  this.cfg.main.dir ??= path.join(process.env.HARAKA || '.', 'delivered')
}

exports.save_to_file = function (next, connection) {
  const txn = connection.transaction
  const dir = this.cfg.main.dir
  const final = path.join(dir, `${txn.uuid}.eml`)
  const tmp = `${final}.tmp`
  let done = false
  const finish = (code, msg) => {
    if (done) return
    done = true
    next(code, msg)
  }
  try {
    fs.mkdirSync(dir, { recursive: true })
  } catch (err) {
    connection.logerror(this, `mkdir ${dir}: ${err.message}`)
    return finish(DENYSOFT, 'queue_to_file: cannot create spool dir')
  }
  const ws = fs.createWriteStream(tmp)
  ws.on('error', (err) => {
    connection.logerror(this, `write ${tmp}: ${err.message}`)
    finish(DENYSOFT, 'queue_to_file: write failed')
  })
  ws.on('close', () => {
    if (done) return
    fs.rename(tmp, final, (err) => {
      if (err) return finish(DENYSOFT, 'queue_to_file: rename failed')
      connection.loginfo(this, `saved ${final}`)
      finish(OK, `Saved as ${txn.uuid}`)
    })
  })
  // LF line endings and un-dot-stuffed: a plain .eml file on disk
  txn.message_stream.pipe(ws, { line_endings: '\n' })
}
